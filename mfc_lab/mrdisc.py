"""Multicast Router Discovery in the snooping lab (mfc_lab.bridge): a capture of the
discovery messages on the wire, the bridge's view of its router ports, and a host
that sends Solicitations.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from mfc_dbus.kernel.mrdisc import SOLICITATION, encode_short
from mfc_dbus.model import Family

from .capture import ETH_P_IP, ETH_P_IPV6, PacketCapture
from .netns import in_netns, netns_run

IPV4_ROUTER_ALERT = 148
IPV6_HOP_BY_HOP = 0
IPV6_ROUTER_ALERT = 5
IGMP_TYPES = range(0x30, 0x33)  # RFC 4286: advertisement, solicitation, termination
ICMPV6_TYPES = range(151, 154)


@dataclass(frozen=True)
class Control:
    """One discovery message as seen on the wire."""

    family: str
    source: str
    destination: str
    hop_limit: int  # IPv4 TTL or IPv6 hop limit
    router_alert: bool
    message: bytes  # the IGMP / ICMPv6 message
    at: float  # when the kernel received it (time.time(): SO_TIMESTAMPNS), not when read

    @property
    def type(self) -> int:
        return self.message[0]


def _ipv4(packet: bytes, at: float) -> Control | None:
    if len(packet) < 20 or packet[9] != socket.IPPROTO_IGMP:
        return None
    header = (packet[0] & 0x0F) * 4
    options = packet[20:header]
    message = packet[header:]
    if not message or message[0] not in IGMP_TYPES:
        return None
    return Control(
        "ipv4",
        str(ipaddress.ip_address(packet[12:16])),
        str(ipaddress.ip_address(packet[16:20])),
        packet[8],
        _has_ipv4_option(options, IPV4_ROUTER_ALERT),
        message,
        at,
    )


def _has_ipv4_option(options: bytes, wanted: int) -> bool:
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            return False
        if kind == 1:
            i += 1
            continue
        if kind == wanted:
            return True
        i += max(options[i + 1], 2) if i + 1 < len(options) else len(options)
    return False


def _ipv6(packet: bytes, at: float) -> Control | None:
    if len(packet) < 48 or packet[6] != IPV6_HOP_BY_HOP:
        return None
    length = (packet[41] + 1) * 8
    if packet[40] != socket.IPPROTO_ICMPV6 or len(packet) < 40 + length + 4:
        return None
    options = packet[42 : 40 + length]
    message = packet[40 + length :]
    if message[0] not in ICMPV6_TYPES:
        return None
    return Control(
        "ipv6",
        str(ipaddress.ip_address(packet[8:24])),
        str(ipaddress.ip_address(packet[24:40])),
        packet[7],
        _has_ipv6_option(options, IPV6_ROUTER_ALERT),
        message,
        at,
    )


def _has_ipv6_option(options: bytes, wanted: int) -> bool:
    i = 0
    while i < len(options):
        if options[i] == wanted:
            return True
        i += 1 if options[i] == 0 else options[i + 1] + 2  # Pad1 has no length byte
    return False


def _control(protocol: int, packet: bytes, at: float) -> Control | None:
    if protocol == ETH_P_IP:
        return _ipv4(packet, at)
    if protocol == ETH_P_IPV6:
        return _ipv6(packet, at)
    return None


class ControlCapture(PacketCapture[Control]):
    """The discovery messages arriving at `ifname` in `ns`, read by a packet socket."""

    def __init__(self, ns: str, ifname: str) -> None:
        super().__init__(ns, ifname, _control, timestamps=True)


def router_ports(ns: str, bridge: str) -> dict[str, dict]:
    """The bridge's multicast router ports as the kernel lists them
    (`bridge -j -d -s mdb show`): {port: {"timer": ..., "type": "temp"|...}}."""
    text = netns_run(ns, "bridge", "-j", "-d", "-s", "mdb", "show", "dev", bridge).stdout
    ports: dict[str, dict] = {}
    for block in json.loads(text or "[]"):
        for entries in (block.get("router") or {}).values():
            for entry in entries:
                ports[entry["port"]] = entry
    return ports


def wait_until(condition: Callable[[], bool], timeout: float, pace: float = 0.05) -> float:
    """Poll `condition` (a kernel view that has no event to wait on) until it holds;
    the seconds it took. AssertionError after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition still false after {timeout} s")
        time.sleep(pace)  # pacing a poll of a kernel table, not synchronisation
    return time.monotonic() - start


class Solicitor:
    """A host on the segment that sends RFC 4286 Solicitations (TTL 1, Router Alert) to
    the all-routers group."""

    def __init__(self, ns: str, ifname: str, family: str) -> None:
        self.family = family
        with in_netns(ns):
            ifindex = socket.if_nametoindex(ifname)
            if family == "ipv4":
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
                self.sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    struct.pack("4s4si", bytes(4), bytes(4), ifindex),
                )
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes((148, 4, 0, 0)))
                self.destination: tuple = ("224.0.0.2", 0)
            else:
                self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                self.sock.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes((0, 0, 5, 2, 0, 0, 1, 0))
                )
                self.destination = ("ff02::2", 0, 0, ifindex)

    def solicit(self) -> None:
        # Padded to 8 bytes as the service sends them (a Linux bridge drops shorter ones).
        family = Family(self.family)
        self.sock.sendto(encode_short(family, SOLICITATION), self.destination)

    def close(self) -> None:
        self.sock.close()
