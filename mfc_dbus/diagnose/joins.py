"""A group nobody joined behind IGMP/MLD snooping.

A snooping bridge or switch sends a group only to the ports that joined it (or that
it takes for multicast routers). A route whose input sees no packets at all may just
sit behind one: the router has to join the group on its input (`mgroup` in
mfc-dbus.conf). The router's own memberships come from `ip -j maddr show`; whether
the input is a Linux bridge with snooping on, or a port of one, from sysfs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from ..client import RouteInfo
from .report import INFO, PROBLEM, Finding, route_name

SYSFS_NET = Path("/sys/class/net")


def parse_memberships(document: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """`ip -j maddr show` -> interface name: the IPv4 and IPv6 groups joined on it."""
    joined: dict[str, frozenset[str]] = {}
    for item in document:
        groups = {
            str(ipaddress.ip_address(entry["address"]))
            for entry in item.get("maddr", [])
            if entry.get("family") in ("inet", "inet6")
        }
        joined[item["ifname"]] = frozenset(groups)
    return joined


def snooping_bridge(interface: str, sysfs: Path = SYSFS_NET) -> str | None:
    """The Linux bridge with multicast snooping on that `interface` is, or is a port
    of; None if neither."""
    own = sysfs / interface / "bridge" / "multicast_snooping"
    if own.exists():
        return interface if own.read_text().strip() == "1" else None
    master = sysfs / interface / "brport" / "bridge"
    if master.exists():
        bridge = master.resolve().name
        flag = sysfs / bridge / "bridge" / "multicast_snooping"
        if flag.exists() and flag.read_text().strip() == "1":
            return bridge
    return None


def not_joined_finding(
    route: RouteInfo, joined: dict[str, frozenset[str]], bridge: str | None
) -> Finding | None:
    """For a route that sees no packets: the group not joined on its input."""
    if route.input not in joined or "/" in route.group:
        return None
    group = str(ipaddress.ip_address(route.group))
    if group in joined[route.input]:
        return None
    name = route_name(route.source, route.group, route.table)
    source = "" if route.source == "*" else f" source {route.source}"
    join = f"`mgroup from {route.input}{source} group {route.group}` in /etc/mfc-dbus/conf.d/"
    if bridge is not None:
        where = "is" if bridge == route.input else f"is a port of {bridge}, which is"
        return Finding(
            PROBLEM,
            "not-joined",
            f"{name}: {route.input} {where} a bridge with IGMP/MLD snooping, and this router "
            f"has not joined {route.group} on it, so the bridge does not send it here: "
            f"add {join} and reload",
        )
    return Finding(
        INFO,
        "not-joined",
        f"{name}: this router has not joined {route.group} on {route.input}; if a switch "
        "with IGMP/MLD snooping is between the sender and this router, it sends the group "
        f"only to ports that joined it: add {join} and reload",
    )
