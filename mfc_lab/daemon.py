"""mfc-dbusd started directly (not by bus activation) in the lab's router namespace.

Unlike an activated service, this process is the caller's own child: a test can
SIGKILL it at any moment, restart it on the same state file, read its log and its
RSS. `ip netns exec` execs the daemon in place, so the child's PID is the daemon's.

    with ServiceProcess(bus, lab, state_file, log_path) as service:
        service.kill()      # SIGKILL, by PID
        service.start()     # again, on the same state file
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family, format_address
from mfc_dbus.names import BUS_NAME

from .bus import PrivateBus
from .netns import Lab, in_netns
from .resource import Resource

MFC_DBUSD = str(Path(sys.executable).with_name("mfc-dbusd"))
# The client as a user runs it: the installed command, else the module.
_CLIENT = Path(sys.executable).with_name("mfc-dbus")
MFC_DBUS_CLI = [str(_CLIENT)] if _CLIENT.exists() else [sys.executable, "-m", "mfc_dbus.cli"]
# Lines an mfc-dbusd log must never contain: an exception that escaped a handler.
UNHANDLED_MARKERS = ("Traceback (most recent call last)", "failed unexpectedly", "CRITICAL")

# Moves the descriptors named in argv[1] to 3, 4, ... and execs argv[2:] as the
# process systemd would start with LISTEN_FDS (sh cannot name descriptors above 9).
_PASS_FDS = """import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000) for fd in fds]
for n, fd in enumerate(high):
    os.dup2(fd, 3 + n, inheritable=True)
for fd in set(fds + high) - set(range(3, 3 + len(fds))):
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""

# (source, group, table, input, outputs) with interface names: one kernel MFC entry.
KernelEntry = tuple[str, str, int, str | None, frozenset[str]]


@dataclass
class ServiceProcess(Resource):
    """One mfc-dbusd in `lab.rtr` on `bus`; a context manager that always ends it."""

    bus: PrivateBus
    lab: Lab
    state_file: Path | None
    log_path: Path
    extra: Sequence[str] = ()
    log_level: str = "info"
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    # As systemd would: a notify socket (NOTIFY_SOCKET) and descriptors handed to the
    # next start (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), name -> fd of this process.
    notify_socket: Path | None = None
    passed_fds: dict[str, int] = field(default_factory=dict)

    def argv(self) -> list[str]:
        state = "none" if self.state_file is None else str(self.state_file)
        daemon = [MFC_DBUSD, "--address", self.bus.address, "--state-file", state,
                  "--log-level", self.log_level, *self.extra]  # fmt: skip
        if self.passed_fds:
            # The descriptors must be 3, 4, ... and LISTEN_PID the daemon's own PID: a
            # small program moves them and execs the daemon in place (same PID).
            fds = ",".join(map(str, self.passed_fds.values()))
            daemon = [sys.executable, "-c", _PASS_FDS, fds, *daemon]
        return ["ip", "netns", "exec", self.lab.rtr, *daemon]

    def _environment(self) -> dict[str, str] | None:
        if self.notify_socket is None and not self.passed_fds:
            return None
        env = dict(os.environ)
        if self.notify_socket is not None:
            env["NOTIFY_SOCKET"] = str(self.notify_socket)
        if self.passed_fds:
            env["LISTEN_FDS"] = str(len(self.passed_fds))
            env["LISTEN_FDNAMES"] = ":".join(self.passed_fds)
        return env

    @property
    def pid(self) -> int:
        assert self.process is not None, "the service is not running"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> int:
        """Start the daemon and wait until it owns the bus name; returns its PID."""
        if self.alive():
            raise RuntimeError(f"mfc-dbusd {self.pid} is already running")
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._environment(), pass_fds=tuple(self.passed_fds.values()),
            )  # fmt: skip
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.bus.owner_pid(BUS_NAME) != self.process.pid:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mfc-dbusd exited with {self.process.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"mfc-dbusd did not own {BUS_NAME}: {self.log_tail()}")
            time.sleep(0.01)
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the daemon (by PID) and reap it: a crash, with no chance to clean up."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (save, flush, exit), SIGKILL after `timeout`; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def unhandled(self) -> list[str]:
        """Log lines that show an exception escaping the service's error boundary."""
        return [
            line
            for line in self.log_text().splitlines()
            if any(marker in line for marker in UNHANDLED_MARKERS)
        ]

    def rss_bytes(self) -> int:
        """Resident set size of the daemon, from /proc/PID/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")


def kernel_entries(lab: Lab, family: Family | None = None) -> set[KernelEntry]:
    """Every MFC entry of the router namespace (both families unless one is given),
    read back from the kernel over rtnetlink, with interface names. The kernel's
    default table (253 for IPv4, 254 for IPv6) is reported as table 0, as the API does.

    Runs in a thread of its own: pyroute2's synchronous API refuses to run inside a
    thread whose event loop is running, and the namespace switch stays in that thread.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_kernel_entries, lab, family).result()


def _kernel_entries(lab: Lab, family: Family | None) -> set[KernelEntry]:
    families = [family] if family is not None else [Family.IPV4, Family.IPV6]
    with in_netns(lab.rtr):
        names = {index: name for index, name in socket.if_nameindex()}
        with NetlinkReader() as reader:
            routes = [route for fam in families for route in reader.dump_mfc(fam)]
    default = {Family.IPV4: 253, Family.IPV6: 254}
    return {
        (
            format_address(route.source),
            format_address(route.group),
            0 if route.table == default[route.family] else route.table,
            None if route.input is None else names.get(route.input, str(route.input)),
            frozenset(names.get(index, str(index)) for index in route.outputs),
        )
        for route in routes
    }
