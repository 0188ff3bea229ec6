"""Multicast receivers and senders inside the container (payload/mcast.py), and the
lab topology: the container's own network namespace is the router, with veth legs to
namespaces `src` and `dst` (payload/topology.sh)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from .container import Container, wait_for

PAYLOAD_DIR = "/opt/mfc-systest"
MCAST = f"{PAYLOAD_DIR}/mcast.py"
TOPOLOGY = f"{PAYLOAD_DIR}/topology.sh"
PORT = 5001

SOURCE_V4, SOURCE_V6 = "192.0.2.1", "2001:db8:1::1"


def ensure_topology(c: Container) -> None:
    """Build src -> router -> dst once per boot (namespaces live in /run)."""
    listed = c.run(["ip", "netns", "list"]).stdout
    if "src" not in listed.split():
        c.run(["sh", TOPOLOGY])


def add_source_address(c: Container, address: str) -> None:
    extra = ["nodad"] if ":" in address else []
    prefix = 64 if ":" in address else 24
    c.run(["ip", "addr", "replace", f"{address}/{prefix}", "dev", "eth0", *extra], netns="src")


def send(c: Container, group: str, tag: str, count: int, *, source: str = "",
         interval: float = 0.002, port: int = PORT) -> None:  # fmt: skip
    """Send `count` datagrams from netns src and wait until all are sent."""
    c.run(send_argv(group, tag, count, source=source, interval=interval, port=port), netns="src")


def send_argv(group: str, tag: str, count: int, *, source: str = "", interval: float = 0.002,
              port: int = PORT) -> list[str]:  # fmt: skip
    argv = ["python3", MCAST, "send", group, str(port), "eth0", "--tag", tag,
            "--count", str(count), "--interval", str(interval)]  # fmt: skip
    if source:
        argv += ["--source", source]
    return argv


@dataclass
class Receiver:
    """A receiver in netns dst that joined `group`; records (source, tag, seq, time)."""

    c: Container
    group: str
    port: int = PORT
    netns: str = "dst"
    stamp: bool = False
    proc: subprocess.Popen | None = None
    arrivals: dict[str, dict[str, dict[int, float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    _ready: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Receiver:
        argv = ["python3", MCAST, "recv", self.group, str(self.port), "eth0"]
        if self.stamp:
            argv += ["--stamp", "--max-seconds", "3600"]
        self.proc = self.c.popen(
            argv,
            netns=self.netns,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            wait_for(lambda: self._ready.is_set() or self.proc.poll() is not None, 20,
                     f"receiver for {self.group} to join")  # fmt: skip
            if not self._ready.is_set():
                raise AssertionError(f"receiver exited: {self.proc.stderr.read()}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts == ["ready"]:
                self._ready.set()
            elif len(parts) in (3, 4):
                # With --stamp the receiver's own arrival time (CLOCK_MONOTONIC, the
                # same clock as the host's: no pipe delay in the gaps measured).
                source, tag, seq = parts[:3]
                when = float(parts[3]) if len(parts) == 4 else time.monotonic()
                with self._lock:
                    self.arrivals[tag][source].setdefault(int(seq), when)

    def close(self) -> None:
        """Closing stdin ends the receiver; kill its nsenter by PID only if it hangs."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- what arrived --------------------------------------------------------------
    def seqs(self, tag: str, source: str | None = None) -> set[int]:
        with self._lock:
            by_source = self.arrivals.get(tag, {})
            if source is not None:
                return set(by_source.get(source, {}))
            return {seq for seqs in by_source.values() for seq in seqs}

    def sources(self, tag: str) -> set[str]:
        with self._lock:
            return set(self.arrivals.get(tag, {}))

    def wait_count(self, tag: str, count: int, timeout: float = 10.0,
                   source: str | None = None) -> set[int]:  # fmt: skip
        """Wait until `count` distinct sequence numbers arrived (or the deadline); return them."""
        deadline = time.monotonic() + timeout
        while len(self.seqs(tag, source)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.seqs(tag, source)

    def longest_gap(self, tag: str) -> float:
        """Longest interval between consecutive arrivals of `tag`, in seconds."""
        with self._lock:
            times = sorted(
                t for seqs in self.arrivals.get(tag, {}).values() for t in seqs.values()
            )
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
