"""Work around a dbus-fast 5.x writer bug that disconnects the service under bursts.

`_MessageWriter.schedule_write` tries to send at once when its queue is empty, even
while a partly written message is still pending; when the socket buffer is full that
send raises BlockingIOError, which `write_callback` treats as fatal and the bus
disconnects (seen with 10,000 RouteAdded signals after one AddRoutes). This wrapper
keeps the same logic but waits for the socket to become writable on EAGAIN.
"""

from __future__ import annotations

import array
import socket
import types
from typing import Any

from dbus_fast.aio import MessageBus


def _write_callback(self: Any, remove_writer: bool = True) -> None:
    sock = self.sock
    try:
        while True:
            if self.buf is None:
                if not self.messages:
                    if remove_writer:
                        self.loop.remove_writer(self.fd)
                    return
                buf, unix_fds, fut = self.messages.popleft()
                self.unix_fds = unix_fds
                self.buf = memoryview(buf)
                self.offset = 0
                self.fut = fut
            try:
                if self.unix_fds and self.negotiate_unix_fd:
                    ancdata = [
                        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))
                    ]
                    self.offset += sock.sendmsg([self.buf[self.offset :]], ancdata)
                    self.unix_fds = None
                else:
                    self.offset += sock.send(self.buf[self.offset :])
            except BlockingIOError:
                self.loop.add_writer(self.fd, self.write_callback)
                return
            if self.offset < len(self.buf):
                self.loop.add_writer(self.fd, self.write_callback)
                return
            self.buf = None
            if self.fut is not None and not self.fut.done():
                self.fut.set_result(None)
    except Exception as exc:
        if self.bus._user_disconnect:
            if self.fut is not None and not self.fut.done():
                self.fut.set_result(None)
        elif self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)
        self.bus._finalize(exc)


def tolerate_full_socket(bus: MessageBus) -> None:
    """Patch this connection's writer (call right after connect())."""
    writer = getattr(bus, "_writer", None)
    if writer is not None and hasattr(writer, "write_callback"):
        writer.write_callback = types.MethodType(_write_callback, writer)
