"""rtnetlink: interface names and link events (the MFC read-back is mfcdump.py).

pyroute2 stays inside this module, imported when first needed (a start does not). Its
objects must be used from the thread (and so the network namespace) that created them.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Literal

RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
_NLMSG_HEADER = struct.Struct("=IHHII")


def interface_indexes() -> dict[str, int]:
    """Interface name -> ifindex for every interface of this namespace."""
    return {name: index for index, name in socket.if_nameindex()}


@dataclass(frozen=True, slots=True)
class LinkEvent:
    kind: Literal["new", "del"]
    name: str
    index: int


class LinkMonitor:
    """Non-blocking RTMGRP_LINK subscription, for an asyncio loop's add_reader.

    Create it before taking the initial interface list so no event falls in between.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_LINK))
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_events(self) -> list[LinkEvent]:
        events: list[LinkEvent] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return events
            events.extend(self._parse(data))

    @staticmethod
    def _parse(data: bytes) -> list[LinkEvent]:
        # Imported at the first link event, not at start: pyroute2 takes ~0.1 s to import.
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        events = []
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if length < _NLMSG_HEADER.size:
                break
            if kind in (RTM_NEWLINK, RTM_DELLINK):
                msg = ifinfmsg(data[offset : offset + length])
                msg.decode()
                name = msg.get_attr("IFLA_IFNAME")
                if name is not None:
                    events.append(
                        LinkEvent("new" if kind == RTM_NEWLINK else "del", name, msg["index"])
                    )
            offset += (length + 3) & ~3
        return events

    def close(self) -> None:
        self._sock.close()
