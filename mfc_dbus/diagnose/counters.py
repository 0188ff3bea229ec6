"""The rules read from the service's own counters (routes and VIFs, sampled twice).

They rest on what the kernel's counters were measured to do (Linux 6.x, lab, IPv4
and IPv6 alike):

- sender TTL/hop limit 1: the packets *do* reach the MFC entry: the route's `packets`
  and the input VIF's `in_packets` rise, while the output VIFs' `out_packets` stay
  still and nothing is delivered (the kernel forwards only when TTL > threshold);
- packets on the wrong interface: the route's `wrong_if` rises, nothing else does;
- `rp_filter` dropping the source (no route back): nothing rises at all: the packet
  is dropped before the multicast routing code, exactly as when nobody sends.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..client import RouteInfo, VifInfo
from .report import OK, PROBLEM, Finding, route_name


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if text in ("", "*"):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _covers(pattern: str, value: str | None) -> bool:
    """Does a route's source/group `pattern` cover `value` (None: any value)?"""
    net = _network(pattern)
    if net is None or value is None:
        return True
    wanted = _network(value)
    if wanted is None or wanted.version != net.version:
        return False
    return wanted.subnet_of(net)  # type: ignore[arg-type]


def is_template(route: RouteInfo) -> bool:
    """(*,G) and prefix routes: realised as learned (S,G) entries carrying the counters."""
    return route.source == "*" or "/" in route.source or "/" in route.group


def matching_routes(routes: list[RouteInfo], group: str, source: str | None) -> list[RouteInfo]:
    return [r for r in routes if _covers(r.group, group) and _covers(r.source, source)]


def _key(route: RouteInfo) -> tuple:
    return (route.family, route.table, route.source, route.group)


def _vif_key(vif: VifInfo) -> tuple:
    return (vif.family, vif.table, vif.interface)


class Deltas:
    """How much each counter rose between two readings (the totals without a first)."""

    def __init__(
        self, before_routes: list[RouteInfo], before_vifs: list[VifInfo], vifs: list[VifInfo]
    ) -> None:
        self.old_routes = {_key(r): r for r in before_routes}
        self.old_vifs = {_vif_key(v): v for v in before_vifs}
        self.vifs = {_vif_key(v): v for v in vifs}

    def packets(self, route: RouteInfo) -> int:
        old = self.old_routes.get(_key(route))
        return route.packets - (old.packets if old else 0)

    def wrong_if(self, route: RouteInfo) -> int:
        old = self.old_routes.get(_key(route))
        return route.wrong_if - (old.wrong_if if old else 0)

    def vif(self, route: RouteInfo, name: str, attr: str) -> int | None:
        vif = self.vifs.get((route.family, route.table, name))
        if vif is None or vif.index is None:
            return None
        old = self.old_vifs.get(_vif_key(vif))
        return getattr(vif, attr) - (getattr(old, attr) if old else 0)

    def threshold(self, route: RouteInfo, name: str) -> int | None:
        vif = self.vifs.get((route.family, route.table, name))
        return None if vif is None else vif.ttl_threshold

    def entry(self, route: RouteInfo) -> dict[str, Any]:
        """The route as `diagnose -j` lists it."""
        return {
            "source": route.source,
            "group": route.group,
            "input": route.input,
            "outputs": list(route.outputs),
            "state": route.state,
            "table": route.table,
            "packets": route.packets,
            "wrong_if": route.wrong_if,
            "packets_delta": self.packets(route),
            "wrong_if_delta": self.wrong_if(route),
        }


def no_route_finding(group: str, source: str | None) -> Finding:
    label = f"({source or '*'}, {group})"
    hint = f"mfc-dbus route add {group}" + (f" from {source}" if source else "")
    return Finding(
        PROBLEM, "no-route", f"no route matches {label}: add one with `{hint} iif IF oif IF...`"
    )


def _name(route: RouteInfo) -> str:
    return route_name(route.source, route.group, route.table)


def _pending(route: RouteInfo) -> Finding:
    missing = ", ".join(route.missing) or "an interface"
    return Finding(
        PROBLEM,
        "pending",
        f"{_name(route)} is pending: {missing} does not exist on this host; "
        "it is installed as soon as the interface appears",
    )


def _template(
    route: RouteInfo, routes: list[RouteInfo], deltas: Deltas, group: str
) -> list[Finding]:
    """A (*,G) or prefix route: its learned (S,G) entries speak for it once there are any."""
    learned = [
        r
        for r in routes
        if not is_template(r) and _covers(route.group, r.group) and _covers(route.source, r.source)
    ]
    if learned:
        return []
    d_in = deltas.vif(route, route.input, "in_packets")
    arrives = f" (+{d_in} packets on {route.input} for other groups)" if d_in else ""
    return [
        Finding(
            PROBLEM,
            "no-source",
            f"{_name(route)} has seen no sender yet{arrives}: is a sender sending to {group} "
            f"behind {route.input}? rp_filter on {route.input} silently drops "
            "sources without a route back",
        )
    ]


def _wrong_input(route: RouteInfo, d_wrong: int, interval: float) -> Finding:
    return Finding(
        PROBLEM,
        "wrong-input",
        f"{_name(route)}: {d_wrong} packets arrived on an interface other than its input "
        f"{route.input} in {interval:g} s: the sender is behind another interface, "
        "or the route's input is wrong",
    )


def _no_packets(route: RouteInfo, deltas: Deltas, interval: float) -> Finding:
    d_in = deltas.vif(route, route.input, "in_packets")
    if d_in:
        why = (
            f"{d_in} packets arrived on {route.input} for other (S,G): "
            "is the sender's address right?"
        )
    else:
        why = (
            f"is the sender sending to {route.group} behind {route.input}? "
            f"rp_filter on {route.input} (net.ipv4.conf.{route.input}.rp_filter) "
            "drops sources without a route back before they are counted"
        )
    when = f"in {interval:g} s" if interval else "yet"
    earlier = f" ({route.packets} earlier)" if route.packets and interval else ""
    return Finding(PROBLEM, "no-packets", f"{_name(route)}: no packets {when}{earlier}: {why}")


def _ttl(route: RouteInfo, deltas: Deltas, d_packets: int) -> Finding:
    thresholds = {o: deltas.threshold(route, o) for o in route.outputs}
    high = {o: t for o, t in thresholds.items() if t is not None and t > 1}
    limit = (
        "above the output threshold (" + ", ".join(f"{o} {t}" for o, t in high.items()) + ")"
        if high
        else "at least 2"
    )
    ttl = "TTL" if route.family == "ipv4" else "hop limit"
    return Finding(
        PROBLEM,
        "ttl",
        f"{_name(route)}: {d_packets} packets arrived on {route.input} but none left through "
        f"{' '.join(route.outputs)}: the sender's {ttl} is probably 1 (the kernel "
        f"forwards a packet only if its {ttl} is {limit}); raise it, e.g. "
        "IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS",
    )


def _blocking(route: RouteInfo, d_packets: int) -> Finding:
    return Finding(
        PROBLEM,
        "blocking",
        f"{_name(route)} has no outputs: it is a blocking route, and the kernel dropped the "
        f"{d_packets} packets that arrived on {route.input}; give it outputs with "
        "`mfc-dbus route add-output`",
    )


def _forwarding(route: RouteInfo, d_packets: int, interval: float) -> Finding:
    return Finding(
        OK,
        "forwarding",
        f"{_name(route)}: forwarding, {d_packets} packets in"
        + (f" {interval:g} s" if interval else " total")
        + f" from {route.input} to {' '.join(route.outputs)}",
    )


def route_findings(
    route: RouteInfo, routes: list[RouteInfo], deltas: Deltas, group: str, interval: float
) -> list[Finding]:
    """What the counters say about one route matching the diagnosed group."""
    if route.state == "pending":
        return [_pending(route)]
    if is_template(route):
        return _template(route, routes, deltas, group)
    d_packets, d_wrong = deltas.packets(route), deltas.wrong_if(route)
    findings = [_wrong_input(route, d_wrong, interval)] if d_wrong > 0 else []
    if d_packets <= 0:
        return findings + [_no_packets(route, deltas, interval)]
    if not route.outputs:
        return findings + [_blocking(route, d_packets)]
    outs = [deltas.vif(route, o, "out_packets") for o in route.outputs]
    known_outs = [d for d in outs if d is not None]
    if known_outs and sum(known_outs) == 0:
        return findings + [_ttl(route, deltas, d_packets)]
    return findings + [_forwarding(route, d_packets, interval)]
