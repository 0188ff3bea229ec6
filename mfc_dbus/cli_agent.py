"""The client's own polkit agent: pkttyagent registered for this process, as systemctl
does, so that polkit can ask for a password on the terminal."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REGISTER_TIMEOUT = 5.0  # seconds to wait for the agent to say it is registered
STOP_TIMEOUT = 2.0


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid it names one
    process for polkit, even after the pid is reused."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def agent_argv(pkttyagent: str, notify_fd: int, pid: int) -> list[str]:
    """pkttyagent registered for this client's own process. polkitd uses an agent
    registered for a session only for callers inside a logind session; one
    registered for the calling process also works under su, runuser, ssh without
    pam_systemd, containers and cron."""
    return [pkttyagent, "--notify-fd", str(notify_fd),
            "--process", f"{pid},{process_start_time(pid)}"]  # fmt: skip


@dataclass
class PolkitAgent:
    """pkttyagent for this client's process, started before the first mutating call."""

    process: subprocess.Popen | None = None
    wanted: bool = False

    def start(self) -> None:
        if not self.wanted or self.process is not None or os.geteuid() == 0:
            return
        path = shutil.which("pkttyagent")
        if path is None:
            return
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                agent_argv(path, write_fd, os.getpid()), pass_fds=(write_fd,)
            )
        except OSError:
            os.close(read_fd)
            return
        finally:
            os.close(write_fd)
        # The agent closes the notify fd once registered (or dies); do not hang on it.
        select.select([read_fd], [], [], REGISTER_TIMEOUT)
        os.close(read_fd)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
