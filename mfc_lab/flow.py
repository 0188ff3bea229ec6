"""A steady numbered flow from the lab's src namespace, to count what an event loses.

Each datagram carries its sequence number; `lost()` names the numbers that never
arrived and `longest_gap()` the longest time between two arrivals. `Draining` reads
a receiver in a thread of its own, so arrival times are real while the test waits
elsewhere (and its buffer is raised as well).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

from .netns import Lab, Receiver

SO_RCVBUFFORCE = 33  # not in Python's socket module
RECEIVE_ROOM = 16 << 20


class SteadyFlow:
    """`rate` datagrams per second to `group` (from `source`, else src's address), in
    a thread, numbered 0, 1, 2, ... while inside the `with`."""

    def __init__(self, lab: Lab, group: str, rate: int = 400, source: str | None = None,
                 family: str = "ipv4") -> None:  # fmt: skip
        self.lab, self.group, self.rate = lab, group, rate
        self.source, self.family = source, family
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.lab.sender(self.family, source=self.source) as sender:
            started = time.monotonic()
            while not self._stop.is_set():
                sender.send(self.group, 1, payload=struct.pack("!I", self.sent))
                self.sent += 1
                delay = started + self.sent / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self) -> SteadyFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class Draining:
    """Reads `receivers` as datagrams arrive, in a thread, while inside the `with`."""

    def __init__(self, *receivers: Receiver) -> None:
        self.receivers = receivers
        for receiver in receivers:
            receiver.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_ROOM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        by_socket = {receiver.sock: receiver for receiver in self.receivers}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(by_socket), [], [], 0.05)
            for sock in ready:
                by_socket[sock].drain()

    def __enter__(self) -> Draining:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def numbers(receiver: Receiver, source: str | None = None) -> list[tuple[int, float]]:
    """(sequence number, arrival time) of what arrived (from `source` only, if given)."""
    return [
        (struct.unpack("!I", payload[:4])[0], arrived)
        for payload, sender, arrived in receiver.received
        if source is None or sender == source
    ]


def lost(receiver: Receiver, sent: int, source: str | None = None) -> list[int]:
    seen = {number for number, _ in numbers(receiver, source)}
    return sorted(set(range(sent)) - seen)


def longest_gap(receiver: Receiver, source: str | None = None) -> float:
    """The longest time (s) between two datagrams that arrived one after the other."""
    times = sorted(arrived for _, arrived in numbers(receiver, source))
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
