"""systemd's notification protocol (sd_notify(3)): a datagram of KEY=VALUE lines to
the socket named by $NOTIFY_SOCKET. Without that variable (run by hand, bus
activation without systemd) every call does nothing."""

from __future__ import annotations

import array
import logging
import os
import socket
from collections.abc import Sequence

log = logging.getLogger("mfc_dbus.service")


def notify(*lines: str, fds: Sequence[int] = ()) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=...") to systemd, with `fds` attached
    (FDSTORE=1); True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendmsg(["\n".join(lines).encode()], rights, 0, address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s (%s): %s", address, lines[0], exc)
            return False
    return True
