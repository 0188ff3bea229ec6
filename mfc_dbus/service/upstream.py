"""The one workaround for a dbus-fast bug; the only private name the project touches.

dbus-fast's asyncio writer (every release from 1.84 to 5.2) treats EAGAIN from
`socket.send` as fatal and drops the bus connection. A unix socket can refuse a
write even right after a complete one (the kernel charges whole buffers against
the send limit), so any service that sends faster than dbus-daemon reads loses its
connection: measured with 50 clients calling at once, even with the Outbox handing
dbus-fast one message at a time. Upstream: altdesktop/python-dbus-next issue #153
("Aio write_callback terminates connection upon EAGAIN error instead of ignoring
this error and retrying"), inherited by dbus-fast.

Here a full socket reports "0 bytes written", which the writer already handles by
waiting until the socket is writable. tests/service/test_upstream.py fails once a
dbus-fast release stops dropping the connection: then this module can go.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from dbus_fast.aio import MessageBus

log = logging.getLogger("mfc_dbus.service")


class _FullSocketWaits:
    """The bus socket, with EAGAIN from send() reported as nothing written."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: Any) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:  # sendmsg (file descriptors), fileno, ...
        return getattr(self._sock, name)


def tolerate_full_socket(bus: MessageBus) -> bool:
    """Apply the workaround to a connected bus; False if this dbus-fast has no such
    writer (then a full socket may still drop the connection; the service reconnects)."""
    writer = getattr(bus, "_writer", None)
    sock = getattr(writer, "sock", None)
    if not isinstance(sock, socket.socket):
        log.info("dbus-fast writer not recognised; EAGAIN workaround not applied")
        return False
    writer.sock = _FullSocketWaits(sock)  # type: ignore[union-attr]
    return True
