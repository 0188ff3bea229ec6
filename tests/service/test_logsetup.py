"""Log lines reach the journal with their priority: a `<N>` prefix on every line when
stderr is the journal stream systemd named in JOURNAL_STREAM, plain lines otherwise;
pyroute2's tc warning is silenced, nothing else."""

from __future__ import annotations

import logging
import os
import tempfile

import pytest

from mfc_dbus.service import logsetup


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in logsetup.QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def _logged(monkeypatch, journal: bool) -> str:
    with tempfile.TemporaryFile("w+") as stream:
        status = os.fstat(stream.fileno())
        if journal:
            monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        else:
            monkeypatch.setenv("JOURNAL_STREAM", "0:0")
        logsetup.configure("debug", stream)
        log = logging.getLogger("mfc_dbus.test")
        log.warning("a warning")
        log.info("an info")
        log.debug("a debug line")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("an error")
        logging.getLogger("pyroute2.netlink.rtnl.tcmsg.common").warning("tc is limited")
        logging.getLogger("pyroute2.other").warning("kept")
        stream.seek(0)
        return stream.read()


def test_journal_lines_carry_their_priority(monkeypatch, restore_logging) -> None:
    lines = _logged(monkeypatch, journal=True).splitlines()
    assert lines[:3] == ["<4>mfc_dbus.test: a warning", "<6>mfc_dbus.test: an info",
                         "<7>mfc_dbus.test: a debug line"]  # fmt: skip
    error = lines[3:-1]
    assert error[0] == "<3>mfc_dbus.test: an error" and len(error) > 2
    assert all(line.startswith("<3>") for line in error)  # the traceback too
    assert "ValueError: boom" in error[-1]
    assert lines[-1] == "<4>pyroute2.other: kept"  # only the tc module is silenced


def test_plain_lines_on_a_terminal(monkeypatch, restore_logging) -> None:
    text = _logged(monkeypatch, journal=False)
    assert text.startswith("WARNING mfc_dbus.test: a warning\nINFO mfc_dbus.test: an info\n")
    assert "<4>" not in text and "tc is limited" not in text
