"""What arrives on the wire at one interface of a lab namespace.

An AF_PACKET socket sees the frames as they come in, not what the host then accepts:
the independent witness of the lab's captures (bridge.PortCapture, mrdisc.ControlCapture).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Generic, Self, TypeVar

from .netns import in_netns

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33  # not in Python's socket module
SO_TIMESTAMPNS = 35  # SCM_TIMESTAMPNS too; not in Python's socket module

T = TypeVar("T")
# (EtherType, the packet from its network header on, when it arrived) -> what it is, or
# None for a packet the capture does not want.
Parser = Callable[[int, bytes, float], T | None]


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the kernel received the packet (SO_TIMESTAMPNS), else now."""
    for level, kind, data in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
            seconds, nanoseconds = struct.unpack("@qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


class PacketCapture(Generic[T]):
    """The packets arriving at `ifname` in `ns` that `parse` turns into a T, in order.

    receive_buffer: bytes to force for the socket's queue (a burst read late is not
    lost); timestamps: `parse` is given the kernel's arrival time, not the reading's.
    """

    def __init__(
        self,
        ns: str,
        ifname: str,
        parse: Parser[T],
        *,
        receive_buffer: int | None = None,
        timestamps: bool = False,
    ) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            if receive_buffer is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
            self.sock.bind((ifname, ETH_P_ALL))
        if timestamps:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self._parse = parse
        self._ancillary_size = 64 if timestamps else 0
        self.received: list[T] = []

    def drain(self) -> None:
        while True:
            try:
                data, ancillary, _, address = self.sock.recvmsg(65536, self._ancillary_size)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue
            parsed = self._parse(address[1], data, _arrival(ancillary))
            if parsed is not None:
                self.received.append(parsed)

    def wait_for(self, wanted: Callable[[T], bool], timeout: float) -> T | None:
        """The first packet (already read or arriving within `timeout`) that is wanted."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            self.drain()
            for packet in self.received[seen:]:
                if wanted(packet):
                    return packet
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.sock], [], [], left)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
