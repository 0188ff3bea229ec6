"""Steady flows through the container's router while something happens to the control
plane (issue 13): receivers that live as long as the module (one per group, in netns
dst, arrival times stamped inside), and per event one sender process in netns src
(payload/steady.py) that runs the steady flows and starts new sources on cue.

Counting is by sequence number: `lost` is what the sender sent minus the distinct
sequence numbers received; the longest gap is between consecutive arrivals of one
flow, as stamped by the receiver (CLOCK_MONOTONIC, shared with the host).
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .container import Container, ContainerError, wait_for
from .flows import PAYLOAD_DIR, PORT, Receiver

STEADY = f"{PAYLOAD_DIR}/steady.py"


@dataclass(frozen=True)
class Flow:
    name: str  # as shown in figures: "(S,G)", "(*,G)", "IPv6"
    group: str
    source: str


@dataclass
class FlowResult:
    flow: Flow
    sent: int
    received: int
    longest_gap: float  # seconds
    errors: int  # sendto errors in the sender (counted as sent)

    @property
    def lost(self) -> int:
        return self.sent - self.received


@dataclass
class NewSource:
    source: str
    started: float | None = None  # monotonic, when the sender started it
    sent: int = 0
    received: set[int] = field(default_factory=set)
    first_arrival: float | None = None

    @property
    def first_delivered(self) -> bool:
        return 0 in self.received

    @property
    def first_latency(self) -> float | None:
        if self.started is None or self.first_arrival is None:
            return None
        return self.first_arrival - self.started


@dataclass
class EventResult:
    tag: str
    flows: list[FlowResult]
    new_sources: list[NewSource]  # only those the sender started

    @property
    def lost(self) -> int:
        return sum(result.lost for result in self.flows)

    @property
    def longest_gap(self) -> float:
        return max((result.longest_gap for result in self.flows), default=0.0)

    def per_flow(self) -> str:
        return ", ".join(
            f"{r.flow.name} {r.lost}/{r.sent} lost, gap {r.longest_gap * 1000:.1f} ms"
            for r in self.flows
        )

    def first_packets(self) -> str:
        delivered = sum(source.first_delivered for source in self.new_sources)
        return f"{delivered}/{len(self.new_sources)}"


class Traffic:
    """Receivers for `flows` (and `new_group`, the (*,G) group new sources send to);
    use as a context manager around everything that measures."""

    def __init__(self, c: Container, flows: list[Flow], *, rate: float = 250.0,
                 new_rate: float = 50.0) -> None:  # fmt: skip
        self.c = c
        self.flows = flows
        self.rate = rate
        self.new_rate = new_rate
        self.receivers: dict[str, Receiver] = {}

    def __enter__(self) -> Traffic:
        try:
            for group in dict.fromkeys(flow.group for flow in self.flows):
                self.receivers[group] = Receiver(self.c, group, stamp=True).__enter__()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for receiver in self.receivers.values():
            receiver.close()
        self.receivers.clear()

    def receiver(self, group: str) -> Receiver:
        return self.receivers[group]

    def last_arrival(self, tag: str, flow: Flow) -> float:
        receiver = self.receivers[flow.group]
        with receiver._lock:
            times = receiver.arrivals.get(tag, {}).get(flow.source, {}).values()
            return max(times, default=0.0)

    @contextmanager
    def event(self, tag: str, new_group: str | None = None,
              new_sources: list[str] = ()) -> Iterator[EventRun]:  # fmt: skip
        """The steady flows (tag `tag`) run around the body; `run.cue()` starts the next of
        `new_sources` (tag `tag-new`, to `new_group`). Flows are flowing when the body
        starts (`preroll` s of packets arrived) and the run ends `postroll` s after the
        body (packets stamped that late arrived, or a deadline), then it is measured."""
        run = EventRun(self, tag, new_group, list(new_sources))
        run.start()
        try:
            yield run
            run.finish()
        finally:
            run.close()


class EventRun:
    PREROLL, POSTROLL = 0.5, 0.5

    def __init__(self, traffic: Traffic, tag: str, new_group: str | None,
                 new_sources: list[str]) -> None:  # fmt: skip
        self.t = traffic
        self.tag = tag
        self.new_tag = f"{tag}-new"
        self.new_group = new_group
        self.new = [NewSource(source) for source in new_sources]
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.sent: dict[tuple[str, str], tuple[int, int]] = {}
        self.result: EventResult | None = None
        self._cued = 0
        self._cueing: threading.Thread | None = None
        self._stop_cueing = threading.Event()

    # -- the sender ----------------------------------------------------------------
    def start(self) -> None:
        specs = [f"{self.tag},{f.group},{f.source},{self.t.rate:g}" for f in self.t.flows]
        specs += [
            f"{self.new_tag},{self.new_group},{n.source},{self.t.new_rate:g},cue" for n in self.new
        ]
        argv = ["python3", STEADY, "eth0", str(PORT), *specs]
        self.proc = self.t.c.popen(argv, netns="src", stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        line = self._next_line(20, "the sender to bind its sockets")
        if line != "ready":
            raise ContainerError(f"steady.py said {line!r}: {self.proc.stderr.read()}")
        # Flowing before the event: each flow's packets for PREROLL seconds arrived.
        want = int(self.t.rate * self.PREROLL)
        for flow in self.t.flows:
            receiver = self.t.receiver(flow.group)
            wait_for(lambda r=receiver, f=flow: len(r.seqs(self.tag, f.source)) >= want, 15,
                     f"{want} packets of {flow.name} {flow.source}->{flow.group} before "
                     f"the event '{self.tag}' (does the route forward at all?)")  # fmt: skip

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # EOF

    def _next_line(self, timeout: float, what: str) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise ContainerError(f"timed out after {timeout:g} s waiting for {what}") from None

    def cue(self) -> bool:
        """Start the next new source now; False when all are running."""
        if self._cued >= len(self.new):
            return False
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("cue\n")
        self.proc.stdin.flush()
        self._cued += 1
        return True

    def cue_every(self, spacing: float, at_least: int = 4) -> None:
        """Start a new source now and every `spacing` s (the traffic's own pace) until
        `stop_cueing()` and `at_least` started, or all are running."""

        def loop() -> None:
            while self.cue():
                stopped = self._stop_cueing.is_set()
                if stopped and self._cued >= at_least:
                    break
                if stopped:
                    time.sleep(spacing)  # pacing the traffic, not waiting for anything
                else:
                    self._stop_cueing.wait(spacing)

        self._cueing = threading.Thread(target=loop, daemon=True)
        self._cueing.start()

    def stop_cueing(self) -> None:
        self._stop_cueing.set()
        if self._cueing is not None:
            self._cueing.join()

    # -- the end and the count -----------------------------------------------------
    def finish(self) -> EventResult:
        self.stop_cueing()
        # Packets stamped POSTROLL after now arrived on every flow (or a deadline: a flow
        # that stopped forwarding is measured as lost, not waited for).
        until = time.monotonic() + self.POSTROLL
        deadline = until + 10.0
        while time.monotonic() < deadline:
            if all(self.t.last_arrival(self.tag, f) >= until for f in self.t.flows):
                break
            time.sleep(0.02)
        self._stop_sender()
        self.result = self._measure()
        return self.result

    def _stop_sender(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        while True:
            line = self._next_line(15, "the sender's counts")
            parts = line.split()
            if line in ("done", ""):
                break
            if parts[0] == "sent":
                _, tag, source, count, errors = parts
                self.sent[(tag, source)] = (int(count), int(errors))
            elif parts[0] == "started":
                _, tag, source, when = parts
                for new in self.new:
                    if new.source == source:
                        new.started = float(when)
        self.proc.wait(timeout=10)

    def _measure(self) -> EventResult:
        # Everything sent is in flight for a moment: wait until it arrived (or 3 s).
        def complete() -> bool:
            return all(
                len(self.t.receiver(f.group).seqs(self.tag, f.source))
                >= self.sent.get((self.tag, f.source), (0, 0))[0]
                for f in self.t.flows
            )

        deadline = time.monotonic() + 3.0
        while not complete() and time.monotonic() < deadline:
            time.sleep(0.02)
        results = []
        for flow in self.t.flows:
            receiver = self.t.receiver(flow.group)
            sent, errors = self.sent.get((self.tag, flow.source), (0, 0))
            seqs = receiver.seqs(self.tag, flow.source)
            with receiver._lock:
                times = sorted(receiver.arrivals.get(self.tag, {}).get(flow.source, {}).values())
            gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
            results.append(FlowResult(flow, sent, len(seqs & set(range(sent))), gap, errors))
        started = []
        for new in self.new:
            if new.started is None:
                continue
            receiver = self.t.receiver(self.new_group)
            new.sent = self.sent.get((self.new_tag, new.source), (0, 0))[0]
            new.received = receiver.seqs(self.new_tag, new.source)
            with receiver._lock:
                new.first_arrival = (
                    receiver.arrivals.get(self.new_tag, {}).get(new.source, {}).get(0)
                )
            started.append(new)
        return EventResult(self.tag, results, started)

    def close(self) -> None:
        """End the sender if the body failed (closing stdin ends it; kill by PID if not)."""
        self._stop_cueing.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
