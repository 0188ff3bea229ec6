"""Logging for mfc-dbusd: plain lines on a terminal, priorities for the journal.

journald reads a line's priority from a `<N>` prefix on stdout/stderr
(SyslogLevelPrefix=, on by default); without it every line is priority 6 and
`journalctl -p warning` shows none of our warnings. systemd says stderr is the
journal by setting JOURNAL_STREAM to the stream's "device:inode".
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# syslog priorities (sd-daemon.h): err 3, warning 4, info 6, debug 7.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6}
DEBUG_PRIORITY = 7

# pyroute2 reads /proc/net/psched when its tc module is imported and warns that "the
# tc subsystem functionality is limited" when the unit's ProcSubset=pid hides it. We
# do not use tc; only that module's own warnings are silenced.
QUIET_LIBRARY_LOGGERS = ("pyroute2.netlink.rtnl.tcmsg.common",)


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback too) starts with the record's `<N>`."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, DEBUG_PRIORITY)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def stream_is_journal(stream: TextIO) -> bool:
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def configure(level: str, stream: TextIO = sys.stderr) -> None:
    # The logging HOWTO's "Optimization": our format shows none of these, and the audit
    # line of every change would otherwise walk the stack to find its caller.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
