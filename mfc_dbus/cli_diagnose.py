"""`mfc-dbus diagnose G [S]`: why does a group not forward? From the service's data only.

The rules rest on what the kernel's counters were measured to do (Linux 6.x, lab,
IPv4 and IPv6 alike):

- sender TTL/hop limit 1: the packets *do* reach the MFC entry: the route's `packets`
  and the input VIF's `in_packets` rise, while the output VIFs' `out_packets` stay
  still and nothing is delivered (the kernel forwards only when TTL > threshold);
- packets on the wrong interface: the route's `wrong_if` rises, nothing else does;
- `rp_filter` dropping the source (no route back): nothing rises at all: the packet
  is dropped before the multicast routing code, exactly as when nobody sends.

Counters are sampled twice, `interval` seconds apart, so "rising" means rising now.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .client import RouteInfo, VifInfo

PROBLEM = "problem"
OK = "ok"
INFO = "info"


@dataclass(frozen=True)
class Snapshot:
    routes: list[RouteInfo]
    vifs: list[VifInfo]


@dataclass(frozen=True)
class Finding:
    severity: str  # problem, ok, info
    code: str  # stable: no-route, pending, no-source, no-packets, wrong-input, ttl, forwarding
    message: str

    def json(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class Diagnosis:
    group: str
    source: str | None
    interval: float
    routes: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(f.severity == PROBLEM for f in self.findings)

    def add(self, severity: str, code: str, message: str) -> None:
        self.findings.append(Finding(severity, code, message))

    def json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "source": self.source,
            "interval": self.interval,
            "healthy": self.healthy,
            "routes": self.routes,
            "findings": [f.json() for f in self.findings],
        }

    def text(self) -> str:
        marks = {PROBLEM: "problem:", OK: "ok:", INFO: "note:"}
        return "\n".join(f"{marks[f.severity]} {f.message}" for f in self.findings)


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


def _key(route: RouteInfo) -> tuple:
    return (route.family, route.table, route.source, route.group)


def _vif_key(vif: VifInfo) -> tuple:
    return (vif.family, vif.table, vif.interface)


def matching_routes(routes: list[RouteInfo], group: str, source: str | None) -> list[RouteInfo]:
    return [r for r in routes if _covers(r.group, group) and _covers(r.source, source)]


def diagnose(
    group: str, source: str | None, before: Snapshot, after: Snapshot, interval: float
) -> Diagnosis:
    result = Diagnosis(group, source, interval)
    label = f"({source or '*'}, {group})"
    routes = matching_routes(after.routes, group, source)
    if not routes:
        hint = f"mfc-dbus route add {group}" + (f" from {source}" if source else "")
        result.add(
            PROBLEM,
            "no-route",
            f"no route matches {label}: add one with `{hint} iif IF oif IF...`",
        )
        return result

    old_routes = {_key(r): r for r in before.routes}
    old_vifs = {_vif_key(v): v for v in before.vifs}
    vifs = {_vif_key(v): v for v in after.vifs}

    def vif_delta(route: RouteInfo, name: str, attr: str) -> int | None:
        vif = vifs.get((route.family, route.table, name))
        if vif is None or vif.index is None:
            return None
        old = old_vifs.get(_vif_key(vif))
        return getattr(vif, attr) - (getattr(old, attr) if old else 0)

    for route in routes:
        old = old_routes.get(_key(route))
        d_packets = route.packets - (old.packets if old else 0)
        d_wrong = route.wrong_if - (old.wrong_if if old else 0)
        entry = {
            "source": route.source,
            "group": route.group,
            "input": route.input,
            "outputs": list(route.outputs),
            "state": route.state,
            "table": route.table,
            "packets": route.packets,
            "wrong_if": route.wrong_if,
            "packets_delta": d_packets,
            "wrong_if_delta": d_wrong,
        }
        result.routes.append(entry)
        name = f"route {route.source} {route.group}" + (
            f" table {route.table}" if route.table else ""
        )
        if route.state == "pending":
            missing = ", ".join(route.missing) or "an interface"
            result.add(
                PROBLEM,
                "pending",
                f"{name} is pending: {missing} does not exist on this host; "
                "it is installed as soon as the interface appears",
            )
            continue
        if is_template(route):
            learned = [
                r
                for r in routes
                if not is_template(r)
                and _covers(route.group, r.group)
                and _covers(route.source, r.source)
            ]
            if not learned:
                d_in = vif_delta(route, route.input, "in_packets")
                arrives = f" (+{d_in} packets on {route.input} for other groups)" if d_in else ""
                result.add(
                    PROBLEM,
                    "no-source",
                    f"{name} has seen no sender yet{arrives}: is a sender sending to {group} "
                    f"behind {route.input}? rp_filter on {route.input} silently drops "
                    "sources without a route back",
                )
            continue
        outs = [vif_delta(route, o, "out_packets") for o in route.outputs]
        known_outs = [d for d in outs if d is not None]
        d_out = sum(known_outs)
        if d_wrong > 0:
            result.add(
                PROBLEM,
                "wrong-input",
                f"{name}: {d_wrong} packets arrived on an interface other than its input "
                f"{route.input} in {interval:g} s: the sender is behind another interface, "
                "or the route's input is wrong",
            )
        if d_packets <= 0:
            d_in = vif_delta(route, route.input, "in_packets")
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
            result.add(PROBLEM, "no-packets", f"{name}: no packets {when}{earlier}: {why}")
            continue
        if known_outs and d_out == 0:
            thresholds = {
                o: vifs[(route.family, route.table, o)].ttl_threshold
                for o in route.outputs
                if (route.family, route.table, o) in vifs
            }
            high = {o: t for o, t in thresholds.items() if t > 1}
            limit = (
                "above the output threshold ("
                + ", ".join(f"{o} {t}" for o, t in high.items())
                + ")"
                if high
                else "at least 2"
            )
            ttl = "TTL" if route.family == "ipv4" else "hop limit"
            result.add(
                PROBLEM,
                "ttl",
                f"{name}: {d_packets} packets arrived on {route.input} but none left through "
                f"{' '.join(route.outputs)}: the sender's {ttl} is probably 1 (the kernel "
                f"forwards a packet only if its {ttl} is {limit}); raise it, e.g. "
                "IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS",
            )
            continue
        if d_packets > 0:
            result.add(
                OK,
                "forwarding",
                f"{name}: forwarding, {d_packets} packets in"
                + (f" {interval:g} s" if interval else " total")
                + f" from {route.input} to {' '.join(route.outputs)}",
            )
    return result
