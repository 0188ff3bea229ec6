"""systemd's notification protocol (sd_notify(3)): a datagram of KEY=VALUE lines to
the socket named by $NOTIFY_SOCKET. Without that variable (run by hand, bus
activation without systemd) every call does nothing."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("mfc_dbus.service")


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=...") to systemd; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", address, exc)
            return False
    return True
