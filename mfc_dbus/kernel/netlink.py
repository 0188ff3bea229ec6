"""rtnetlink: read-back of the kernel's multicast tables, interface names and link events.

pyroute2 stays inside this module. Its objects must be used from the thread (and so
the network namespace) that created them.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Literal

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ..model import KERNEL_DEFAULT_TABLE, Family, IPAddress

RTNL_FAMILY_IPMR = 128
RTNL_FAMILY_IP6MR = 129
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
_NLMSG_HEADER = struct.Struct("=IHHII")


class _MulticastDecodeNoise(logging.Filter):
    """pyroute2 has no address decoder for families 128/129 and logs a warning with a
    traceback for every RTA_SRC/RTA_DST of every dump; we decode those bytes ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("decoding RTA_")
            or (message.startswith("Traceback") and "socket family not supported" in message)
            or (message.startswith("Traceback") and "bad char in struct format" in message)
        )


logging.getLogger("pyroute2.netlink").addFilter(_MulticastDecodeNoise())

_RTNL_FAMILY = {Family.IPV4: RTNL_FAMILY_IPMR, Family.IPV6: RTNL_FAMILY_IP6MR}


def kernel_table_id(table: int, family: Family) -> int:
    """Our table 0 is the kernel's default multicast table of the family."""
    return KERNEL_DEFAULT_TABLE[family] if table == 0 else table


def our_table_id(kernel_table: int, family: Family) -> int:
    return 0 if kernel_table == KERNEL_DEFAULT_TABLE[family] else kernel_table


@dataclass(frozen=True)
class KernelRoute:
    """One MFC entry as the kernel reports it (what `ip mroute show` prints)."""

    family: Family
    table: int
    source: IPAddress
    group: IPAddress
    input: int | None  # ifindex of the input VIF's device; None while unresolved
    outputs: dict[int, int] = field(default_factory=dict)  # ifindex -> TTL threshold
    packets: int = 0
    bytes: int = 0
    wrong_if: int = 0


def _trailing(raw: bytes, size: int) -> bytes:
    # pyroute2 decodes these attributes of families 128/129 as raw data, sometimes with
    # the 4-byte attribute header still in front: the payload is the last `size` bytes.
    return bytes(raw[-size:])


def _decode_route(family: Family, msg) -> KernelRoute:
    address_class = ipaddress.IPv4Address if family is Family.IPV4 else ipaddress.IPv6Address
    size = 4 if family is Family.IPV4 else 16
    outputs = {hop["oif"]: hop["hops"] for hop in msg.get_attr("RTA_MULTIPATH") or ()}
    packets = octets = wrong_if = 0
    stats = msg.get_attr("RTA_MFC_STATS")
    if isinstance(stats, bytes | bytearray) and len(stats) >= 24:
        # struct rta_mfc_stats: three u64 at the end of the attribute.
        packets, octets, wrong_if = struct.unpack("=QQQ", bytes(stats[-24:]))
    return KernelRoute(
        family=family,
        table=our_table_id(msg.get_attr("RTA_TABLE"), family),
        source=address_class(_trailing(msg.get_attr("RTA_SRC"), size)),
        group=address_class(_trailing(msg.get_attr("RTA_DST"), size)),
        input=msg.get_attr("RTA_IIF"),
        outputs=outputs,
        packets=packets,
        bytes=octets,
        wrong_if=wrong_if,
    )


class NetlinkReader:
    """Reads the MFC tables and interface indexes in the namespace it was created in."""

    def __init__(self) -> None:
        self._ipr = IPRoute()

    def dump_mfc(self, family: Family, table: int | None = None) -> list[KernelRoute]:
        routes = [
            _decode_route(family, msg) for msg in self._ipr.get_routes(family=_RTNL_FAMILY[family])
        ]
        if table is not None:
            routes = [route for route in routes if route.table == table]
        return routes

    def interface_indexes(self) -> dict[str, int]:
        return {link.get_attr("IFLA_IFNAME"): link["index"] for link in self._ipr.get_links()}

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> NetlinkReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def dump_mfc(family: Family, table: int | None = None) -> list[KernelRoute]:
    """The kernel's MFC entries of `family` (optionally one table), in this namespace."""
    with NetlinkReader() as reader:
        return reader.dump_mfc(family, table)


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
