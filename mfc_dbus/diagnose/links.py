"""Interfaces without IFF_MULTICAST (`ip link set IF multicast off`, and point-to-point
links such as WireGuard's that never set it).

Measured on Linux 6.x with veth pairs, IPv4 and IPv6: the kernel takes such an
interface as a VIF and forwards through it, as input and as output, regardless of
the flag. Software that reads the flag treats the interface as not carrying
multicast, so it is worth naming: a problem when the route does not forward, a note
when its counters say it does.
"""

from __future__ import annotations

from typing import Any

from ..client import RouteInfo
from .report import INFO, PROBLEM, Finding, route_name


def parse_links(document: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """`ip -j link show` -> interface name: its flags (BROADCAST, MULTICAST, UP, ...)."""
    return {
        item["ifname"]: frozenset(item.get("flags", [])) for item in document if "ifname" in item
    }


def without_multicast(route: RouteInfo, links: dict[str, frozenset[str]]) -> list[tuple[str, str]]:
    """(role, interface) of the route's input and outputs that exist here with multicast off."""
    roles = [("input", route.input)] + [("output", o) for o in route.outputs]
    return [
        (role, name) for role, name in roles if "MULTICAST" not in links.get(name, {"MULTICAST"})
    ]


def multicast_flag_finding(
    route: RouteInfo, role: str, interface: str, forwarding: bool
) -> Finding:
    name = route_name(route.source, route.group, route.table)
    despite = " (the kernel forwards through it regardless)" if forwarding else ""
    return Finding(
        INFO if forwarding else PROBLEM,
        "no-multicast-flag",
        f"{name}: its {role} {interface} has multicast off (no IFF_MULTICAST flag){despite}: "
        f"turn it on with `ip link set {interface} multicast on`",
    )


def multicast_flag_findings(
    route: RouteInfo, links: dict[str, frozenset[str]], forwarding: bool
) -> list[Finding]:
    return [
        multicast_flag_finding(route, role, interface, forwarding)
        for role, interface in without_multicast(route, links)
    ]
