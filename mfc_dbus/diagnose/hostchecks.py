"""The host's part of a diagnosis: mrules, interface flags and firewall, per route.

The checks run only where the route's interfaces exist: `mfc-dbus` run in another
network namespace than the service would otherwise judge another host's firewall.
Each missing mrule and each interface is named once, however many routes share it.
"""

from __future__ import annotations

from ..client import RouteInfo
from .firewall import firewall_findings
from .host import HostState
from .joins import not_joined_finding, snooping_bridge
from .links import multicast_flag_finding, without_multicast
from .mrules import mrule_findings
from .report import INFO, Finding


class HostChecks:
    def __init__(self, before: HostState, after: HostState, interval: float) -> None:
        self.before, self.after, self.interval = before, after, interval
        self.named: set[object] = set()

    def applies_to(self, routes: list[RouteInfo]) -> bool:
        """Are the routes' interfaces here, in this network namespace?"""
        links = self.after.links or {}
        return any(r.input in links or set(r.outputs) & set(links) for r in routes)

    def _once(self, key: object, findings: list[Finding]) -> list[Finding]:
        if not findings or key in self.named:
            return []
        self.named.add(key)
        return findings

    def causes(self, route: RouteInfo, forwarding: bool) -> list[Finding]:
        """Host settings that keep the route's packets from it, or from leaving."""
        rules = self.after.mrules.get(route.family, [])
        found = self._once(
            ("mrule", route.family, route.table, route.input), mrule_findings(route, rules)
        )
        for role, interface in without_multicast(route, self.after.links or {}):
            finding = multicast_flag_finding(route, role, interface, forwarding)
            found += self._once(("flag", interface), [finding])
        return found

    def not_joined(self, route: RouteInfo) -> list[Finding]:
        """For a route that sees no packets: the group not joined on its input."""
        finding = not_joined_finding(route, self.after.joined, snooping_bridge(route.input))
        return [finding] if finding is not None else []

    def firewall(self, route: RouteInfo) -> list[Finding]:
        """The firewall rules dropping a route the kernel's counters call forwarding."""
        if not self.after.firewall_read:
            why = "; ".join(u for u in self.after.unread if u.startswith(("nft", "iptables")))
            return self._once(
                "firewall-unread",
                [Finding(INFO, "firewall-unread", f"the firewall was not checked: {why}")],
            )
        before = self.before.firewall if self.interval else []
        return firewall_findings(route, before, self.after.firewall, self.interval)
