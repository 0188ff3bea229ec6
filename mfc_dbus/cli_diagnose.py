"""`mfc-dbus diagnose G [S]`: why does a group not forward?

From the service's counters (`diagnose.counters`), sampled twice, `interval` seconds
apart, so "rising" means rising now; and from the host the command runs on
(`diagnose.host`): a firewall rule dropping what the kernel counts as forwarded, a
missing `ip mrule` for a route in another table, an interface with multicast off.
Each Snapshot reads the host when it is taken, so the firewall's counters are
sampled together with the service's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .client_routes import RouteInfo
from .client_vifs import VifInfo
from .diagnose.counters import (
    Deltas,
    is_template,
    matching_routes,
    no_route_finding,
    route_findings,
)
from .diagnose.host import HostState
from .diagnose.hostchecks import HostChecks
from .diagnose.report import INFO, OK, PROBLEM, Diagnosis, Finding

__all__ = [
    "INFO",
    "OK",
    "PROBLEM",
    "Diagnosis",
    "Finding",
    "HostState",
    "Snapshot",
    "diagnose",
    "is_template",
    "matching_routes",
]


@dataclass(frozen=True)
class Snapshot:
    routes: list[RouteInfo]
    vifs: list[VifInfo]
    host: HostState = field(default_factory=HostState.read)


def _with_host(route: RouteInfo, found: list[Finding], checks: HostChecks | None) -> list[Finding]:
    """The counters' findings for a route, with the host's causes first and a firewall
    drop in place of "forwarding"."""
    if checks is None or route.state == "pending":
        return found
    forwarding = any(f.code == "forwarding" for f in found)
    causes = checks.causes(route, forwarding)
    if not forwarding:
        if any(f.code == "no-packets" for f in found):
            causes += checks.not_joined(route)
        return causes + found
    drops = checks.firewall(route)
    if any(f.severity == PROBLEM for f in drops):
        found = [f for f in found if f.code != "forwarding"]
    return causes + found + drops


def diagnose(
    group: str, source: str | None, before: Snapshot, after: Snapshot, interval: float
) -> Diagnosis:
    result = Diagnosis(group, source, interval)
    routes = matching_routes(after.routes, group, source)
    if not routes:
        result.findings.append(no_route_finding(group, source))
        return result
    deltas = Deltas(before.routes, before.vifs, after.vifs)
    checks = HostChecks(before.host, after.host, interval)
    active = checks if checks.applies_to(routes) else None
    for route in routes:
        result.routes.append(deltas.entry(route))
        found = route_findings(route, routes, deltas, group, interval)
        result.findings.extend(_with_host(route, found, active))
    return result
