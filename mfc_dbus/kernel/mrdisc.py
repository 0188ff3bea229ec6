"""Multicast Router Discovery (RFC 4286) on one interface: the raw socket that sends
Advertisements and Terminations and receives Solicitations.

An IGMP/MLD-snooping switch (a Linux bridge among them) treats the port an
Advertisement arrives on as a multicast router port and forwards every group there,
joined or not. The messages (RFC 4286 sections 3-5):

    Advertisement  type | interval (s) | checksum | query interval | robustness
    Solicitation   type | reserved     | checksum  (sent padded to 8 bytes)
    Termination    type | reserved     | checksum  (sent padded to 8 bytes)

IPv4 carries them in IGMP (types 0x30-0x32), IPv6 in ICMPv6 (151-153); both with
TTL / hop limit 1 and the Router Alert option. Advertisements and Terminations go to
the all-snoopers group, Solicitations to all-routers (which this socket joins).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from ..errors import NoSuchInterface
from ..model import Family

ALL_SNOOPERS = {Family.IPV4: "224.0.0.106", Family.IPV6: "ff02::6a"}
ALL_ROUTERS = {Family.IPV4: "224.0.0.2", Family.IPV6: "ff02::2"}
ADVERTISEMENT, SOLICITATION, TERMINATION = range(3)  # indexes into TYPES
TYPES = {Family.IPV4: (0x30, 0x31, 0x32), Family.IPV6: (151, 152, 153)}

_ADVERTISEMENT = struct.Struct("!BBHHH")
# Solicitation and Termination, padded with zeros to the 8 bytes of an IGMP / ICMPv6
# header: a Linux snooping bridge drops shorter ones (ip_mc_check_igmp and
# ipv6_mc_check_mld fail with EINVAL), and the padding is inside the checksum.
_SHORT = struct.Struct("!BBH4x")
# IPv4 option 148 (Router Alert), length 4, value 0: "examine this packet".
_IPV4_ROUTER_ALERT = bytes((148, 4, 0, 0))
# A hop-by-hop header (the kernel fills in next-header) with Router Alert (type 5,
# length 2, value 0: MLD) and a 2-byte PadN to the 8-byte boundary.
_IPV6_HOP_BY_HOP = bytes((0, 0, 5, 2, 0, 0, 1, 0))
_ICMPV6_FILTER = 1  # <linux/icmpv6.h>: at level IPPROTO_ICMPV6
_IP_MREQN = struct.Struct("4s4si")  # multicast address, local address, ifindex


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What an Advertisement says: seconds between advertisements, and the IGMP/MLD
    querier's query interval and robustness variable (0: no querier runs here)."""

    interval: int
    query_interval: int = 0
    robustness: int = 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def encode_advertisement(family: Family, advertisement: Advertisement) -> bytes:
    message = _ADVERTISEMENT.pack(
        TYPES[family][ADVERTISEMENT],
        advertisement.interval,
        0,
        advertisement.query_interval,
        advertisement.robustness,
    )
    return _with_checksum(family, message)


def encode_short(family: Family, kind: int) -> bytes:
    """A Solicitation (kind SOLICITATION) or a Termination (kind TERMINATION)."""
    return _with_checksum(family, _SHORT.pack(TYPES[family][kind], 0, 0))


def _with_checksum(family: Family, message: bytes) -> bytes:
    if family is Family.IPV6:  # the kernel computes ICMPv6 checksums (pseudo-header)
        return message
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


def decode_advertisement(family: Family, message: bytes) -> Advertisement | None:
    """The Advertisement in an IGMP/ICMPv6 message; None for any other message."""
    if len(message) < _ADVERTISEMENT.size or message[0] != TYPES[family][ADVERTISEMENT]:
        return None
    _, interval, _, query_interval, robustness = _ADVERTISEMENT.unpack_from(message)
    return Advertisement(interval, query_interval, robustness)


class MrdiscSocket:
    """The discovery socket of one interface. Raises OSError (or NoSuchInterface when
    the interface is gone) and never returns error codes."""

    def __init__(self, family: Family, interface: str) -> None:
        self.family = family
        self.interface = interface
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError as exc:
            raise NoSuchInterface(f"no interface {interface!r} to advertise on") from exc
        if family is Family.IPV4:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
        else:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            self._configure()
        except OSError as exc:
            self.sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise NoSuchInterface(f"interface {interface!r} is gone") from exc
            raise
        self._destination: tuple[str, int] | tuple[str, int, int, int]
        self._destination = (ALL_SNOOPERS[family], 0)
        if family is Family.IPV6:
            self._destination = (ALL_SNOOPERS[family], 0, 0, self.ifindex)

    def _configure(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        # Solicitations from this interface only.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        group = ipaddress.ip_address(ALL_ROUTERS[self.family]).packed
        if self.family is Family.IPV4:
            anywhere = bytes(4)
            sock.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_MULTICAST_IF,
                _IP_MREQN.pack(anywhere, anywhere, self.ifindex),
            )
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, _IPV4_ROUTER_ALERT)
            sock.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_ADD_MEMBERSHIP,
                _IP_MREQN.pack(group, anywhere, self.ifindex),
            )
            return
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, _IPV6_HOP_BY_HOP)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", self.ifindex)
        )
        # Wake up for Solicitations only, not for every neighbour discovery message.
        blocked = [0xFFFFFFFF] * 8
        solicitation = TYPES[Family.IPV6][SOLICITATION]
        blocked[solicitation >> 5] &= ~(1 << (solicitation & 31))
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMPV6_FILTER, struct.pack("@8I", *blocked))

    def fileno(self) -> int:
        return self.sock.fileno()

    def is_current(self) -> bool:
        """Whether the interface of this name is still the one the socket is bound to
        (it may have been deleted and made again with a new index)."""
        try:
            return socket.if_nametoindex(self.interface) == self.ifindex
        except OSError:
            return False

    def advertise(self, advertisement: Advertisement) -> None:
        self.sock.sendto(encode_advertisement(self.family, advertisement), self._destination)

    def terminate(self) -> None:
        self.sock.sendto(encode_short(self.family, TERMINATION), self._destination)

    def read_solicitations(self) -> int:
        """Read what is queued; how many Solicitations were among it."""
        wanted = TYPES[self.family][SOLICITATION]
        count = 0
        while True:
            try:
                packet = self.sock.recv(2048)
            except BlockingIOError:
                return count
            if self.family is Family.IPV4:  # IPv4 raw sockets see the IP header
                packet = packet[(packet[0] & 0x0F) * 4 :] if packet else b""
            if packet and packet[0] == wanted:
                count += 1

    def close(self) -> None:
        self.sock.close()
