"""What a router says on the wire about its groups: IGMPv3 membership reports captured
on an interface of a lab namespace (AF_PACKET), decoded into group records."""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from dataclasses import dataclass

from mfc_lab import in_netns

ETH_P_IP = 0x0800
IGMPV3_REPORT = 0x22
# Record types (RFC 3376 4.2.12): a leave of an any-source join is TO_IN({}), of a
# source BLOCK_OLD_SOURCES; a join TO_EX({}) or ALLOW_NEW_SOURCES.
MODE_IS_INCLUDE, MODE_IS_EXCLUDE, TO_INCLUDE, TO_EXCLUDE, ALLOW, BLOCK = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class Record:
    kind: int
    group: str
    sources: tuple[str, ...]

    @property
    def leaves(self) -> bool:
        """A leave: of the group (TO_IN with no source) or of sources (BLOCK)."""
        return (self.kind == TO_INCLUDE and not self.sources) or self.kind == BLOCK


def _records(packet: bytes) -> list[Record]:
    if len(packet) < 20 or packet[9] != socket.IPPROTO_IGMP:
        return []
    igmp = packet[(packet[0] & 0x0F) * 4 :]
    if len(igmp) < 8 or igmp[0] != IGMPV3_REPORT:
        return []
    (count,) = struct.unpack_from("!H", igmp, 6)
    records, at = [], 8
    for _ in range(count):
        kind, aux, n = struct.unpack_from("!BBH", igmp, at)
        group = str(ipaddress.IPv4Address(igmp[at + 4 : at + 8]))
        sources = tuple(
            str(ipaddress.IPv4Address(igmp[at + 8 + 4 * i : at + 12 + 4 * i])) for i in range(n)
        )
        records.append(Record(kind, group, sources))
        at += 8 + 4 * n + 4 * aux
    return records


class IgmpCapture:
    """Every IGMPv3 group record seen on `ifname` in namespace `ns` from creation on."""

    def __init__(self, ns: str, ifname: str) -> None:
        with in_netns(ns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                                       socket.htons(ETH_P_IP))  # fmt: skip
            self._sock.bind((ifname, ETH_P_IP))
        self.records: list[Record] = []

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self._sock], [], [], timeout)
        while ready:
            self.records.extend(_records(self._sock.recv(65536)))
            ready, _, _ = select.select([self._sock], [], [], 0)

    def wait_for(self, group: str, kind: int, timeout: float = 10.0) -> Record:
        """The first record of `kind` for `group` (seen already, or arriving)."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records:
                if record.group == group and record.kind == kind:
                    return record
            left = deadline - time.monotonic()
            assert left > 0, f"no IGMP record {kind} for {group}; saw {self.records}"
            self._read(left)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> IgmpCapture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
