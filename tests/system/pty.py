"""Drive a command inside the container on a real pseudo-terminal: the pty is its
controlling terminal (a new session on the host side, TIOCSCTTY), so /dev/tty works
inside and a polkit text agent (pkttyagent) can prompt on it."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from dataclasses import dataclass, field


def _take_controlling_tty() -> None:  # in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class PtySession:
    argv: list[str]
    proc: subprocess.Popen | None = None
    master: int = -1
    transcript: bytearray = field(default_factory=bytearray)

    def __enter__(self) -> PtySession:
        self.master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_take_controlling_tty,
                close_fds=True,
            )
        finally:
            os.close(slave)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # our own child, by PID
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def _pump(self, timeout: float) -> bool:
        """Read what is there (up to `timeout`); False once the terminal is closed."""
        readable, _, _ = select.select([self.master], [], [], timeout)
        if not readable:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: every slave fd closed
            return False
        self.transcript += data
        return bool(data)

    def expect(self, text: str, timeout: float) -> bool:
        """Wait until `text` appeared in the output; False if the command ended first
        or the deadline passed."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.transcript:
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.2)):
                return text.encode() in self.transcript
            if self.proc.poll() is not None:
                self._drain()
                return text.encode() in self.transcript
        return True

    def expect_password_prompt(self, timeout: float) -> bool:
        """Wait for "Password:" and for the reader to turn echo off (it flushes typed-ahead
        input when it does): only then is an answer read as the password."""
        deadline = time.monotonic() + timeout
        if not self.expect("Password:", timeout):
            return False
        while termios.tcgetattr(self.master)[3] & termios.ECHO:
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                return False
            self._pump(0.02)
        return True

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float) -> int:
        """Wait for the command, reading its output meanwhile; its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.1)
        if self.proc.poll() is None:
            raise AssertionError(
                f"still running after {timeout:g} s; the terminal shows:\n{self.text}"
            )
        self._drain()
        return self.proc.returncode

    def _drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.transcript += data

    @property
    def text(self) -> str:
        return self.transcript.decode(errors="replace")
