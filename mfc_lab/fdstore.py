"""A stand-in for systemd's side of sd_notify: a datagram socket that records the
service's notifications (READY=1, STATUS=...) and keeps the descriptors it stores
(FDSTORE=1, FDNAME=...; FDSTOREREMOVE=1 closes one), so a test can kill the service
and hand them to the next one, as systemd's fd store does. Used with
ServiceProcess(notify_socket=..., passed_fds=store.fds)."""

from __future__ import annotations

import array
import os
import select
import shutil
import socket
import tempfile
import time
from pathlib import Path


class NotifyStore:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mfc-notify-"))
        self.path = self.directory / "notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(str(self.path))
        self.fds: dict[str, int] = {}  # FDNAME -> our copy of the stored descriptor
        self.messages: list[dict[str, str]] = []

    def _receive(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return False
        size = array.array("i").itemsize
        data, ancdata, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(16 * size))
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % size])
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(fields)
        if fields.get("FDSTOREREMOVE") == "1":  # systemd closes every fd of the name
            gone = self.fds.pop(fields.get("FDNAME", ""), None)
            if gone is not None:
                os.close(gone)
        if fields.get("FDSTORE") == "1" and fds:
            name = fields.get("FDNAME", "stored")
            old = self.fds.get(name)
            self.fds[name] = fds[0]
            if old is not None:
                os.close(old)  # systemd keeps one per socket too
            for extra in fds[1:]:
                os.close(extra)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def wait_for(self, key: str, value: str, timeout: float = 10.0) -> dict[str, str]:
        """The first notification (from now on) with `key`=`value`."""
        seen = len(self.messages)
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[seen:]:
                if message.get(key) == value:
                    return message
            seen = len(self.messages)
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                raise TimeoutError(f"no {key}={value} notification; got {self.messages}")

    def drain(self) -> None:
        while self._receive(0):
            pass

    def close(self) -> None:
        """Close the stored descriptors (as `systemctl stop` does) and the socket."""
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        self._sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> NotifyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
