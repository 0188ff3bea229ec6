"""Three-valued matching of a route's flow against selectors read from the host.

A selector of a firewall rule or a multicast routing rule matches a flow, does not,
or cannot be decided from what a route says (a UDP port, a conntrack state, a mark):
True, False or None. A route's source or group may be a prefix ("*" or None: any).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Tri = bool | None


@dataclass(frozen=True)
class AddressRange:
    """`first`..`last` inclusive, as an nft set element or an iptables -s/-d value gives it."""

    first: IPAddress
    last: IPAddress

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        """An address, a prefix (`a/len`) or a range (`a-b`); ValueError otherwise."""
        if "-" in text:
            low, high = text.split("-", 1)
            return cls.of(ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip()))
        net = ipaddress.ip_network(text.strip(), strict=False)
        return cls(net.network_address, net.broadcast_address)

    @classmethod
    def of(cls, first: IPAddress, last: IPAddress) -> AddressRange:
        if first.version != last.version or first > last:  # type: ignore[operator]
            raise ValueError(f"{first}-{last} is not an address range")
        return cls(first, last)

    @property
    def version(self) -> int:
        return self.first.version


def flow_range(text: str | None) -> AddressRange | None:
    """The addresses a route's source or group covers; None: any address."""
    if text is None or text in ("", "*"):
        return None
    try:
        return AddressRange.parse(text)
    except ValueError:
        return None


def covers(ranges: tuple[AddressRange, ...], flow: AddressRange | None) -> Tri:
    """Does one of `ranges` contain every address of `flow`? None when only some are."""
    if flow is None:
        return None
    partly = False
    for candidate in ranges:
        if candidate.version != flow.version:
            continue
        if candidate.first <= flow.first and flow.last <= candidate.last:  # type: ignore[operator]
            return True
        if not (flow.last < candidate.first or candidate.last < flow.first):  # type: ignore[operator]
            partly = True
    return None if partly else False


def name_matches(pattern: str, name: str) -> bool:
    """An interface name, or a prefix ending in `*` (nft) or `+` (iptables)."""
    if pattern.endswith(("*", "+")):
        return name.startswith(pattern[:-1])
    return pattern == name


def negate(value: Tri) -> Tri:
    return None if value is None else not value


def all_of(values: list[Tri]) -> Tri:
    """False if any is False, True if all are True, else None."""
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None
