"""Firewall rules that drop a forwarded flow, from nftables and iptables alike.

The kernel counts a VIF's `out_packets` in ipmr_queue_xmit/ip6mr_forward2 *before*
netfilter's FORWARD hook (and POSTROUTING after it): a rule dropping the flow there
leaves the multicast counters saying "forwarding" while nothing arrives. The rule's
own counter is the witness: `nft.py` and `iptables.py` turn each tool's rule set into
the `FirewallRule`s below (the rules a forwarded packet passes, with the conditions
of the jumps that lead to them), and `firewall_findings` names those that drop or
reject a route's packets and whose counters rose.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..client import RouteInfo
from .matching import AddressRange, Tri, all_of, covers, flow_range, name_matches, negate
from .report import PROBLEM, Finding, route_name

DROPPING = ("drop", "reject")


@dataclass(frozen=True)
class AddressMatch:
    """`ip saddr`/`ip6 daddr` (nft), `-s`/`-d` (iptables); `version` 4 or 6."""

    field: str  # "saddr" or "daddr"
    version: int
    ranges: tuple[AddressRange, ...]
    negated: bool = False

    @property
    def text(self) -> str:
        shown = [f"{r.first}-{r.last}" if r.first != r.last else str(r.first) for r in self.ranges]
        op = " !=" if self.negated else ""
        return f"{'ip' if self.version == 4 else 'ip6'} {self.field}{op} {', '.join(shown)}"


@dataclass(frozen=True)
class InterfaceMatch:
    """`iifname`/`oifname`/`iif`/`oif` (nft), `-i`/`-o` (iptables)."""

    direction: str  # "in" or "out"
    names: tuple[str, ...]
    negated: bool = False

    @property
    def text(self) -> str:
        return (
            f"{self.direction}put interface{' !=' if self.negated else ''} {', '.join(self.names)}"
        )


@dataclass(frozen=True)
class Fixed:
    """A condition whose outcome does not depend on the route: `meta pkttype multicast`
    is True for every multicast packet; `udp dport 5001` cannot be known (None)."""

    value: Tri
    text: str


Condition = AddressMatch | InterfaceMatch | Fixed


@dataclass(frozen=True)
class FirewallRule:
    """One rule (or a base chain's policy) that forwarded multicast passes."""

    key: tuple[str | int, ...]  # the same rule in two readings of the rule set
    where: str  # e.g. "nftables rule inet filter forward handle 4"
    families: frozenset[str]  # "ipv4", "ipv6"
    verdict: str  # drop, reject, accept, jump, other
    packets: int | None  # its counter; None: the rule counts nothing
    conditions: tuple[Condition, ...]
    base: tuple[str, ...]  # the base chain (hook forward/postrouting) it is reached from
    undo: str = ""  # a command that removes it
    policy: bool = False  # the base chain's policy, not a rule


def _condition(condition: Condition, route: RouteInfo, output: str) -> Tri:
    if isinstance(condition, Fixed):
        return condition.value
    if isinstance(condition, InterfaceMatch):
        name = route.input if condition.direction == "in" else output
        hit = any(name_matches(pattern, name) for pattern in condition.names)
        return hit != condition.negated
    version = 4 if route.family == "ipv4" else 6
    if condition.version != version:
        return False  # `ip daddr` in an inet table matches IPv4 packets only
    text = route.source if condition.field == "saddr" else route.group
    value = covers(condition.ranges, flow_range(text))
    return negate(value) if condition.negated else value


def rule_matches(rule: FirewallRule, route: RouteInfo, output: str) -> Tri:
    """Does `rule` see the route's packets leaving through `output`?"""
    if route.family not in rule.families:
        return False
    return all_of([_condition(c, route, output) for c in rule.conditions])


def _outputs_hit(rule: FirewallRule, route: RouteInfo) -> list[str]:
    return [o for o in route.outputs if rule_matches(rule, route, o) is not False]


def _accepting(rules: list[FirewallRule], route: RouteInfo, upto: FirewallRule) -> bool:
    """May a rule of `upto`'s base chain, listed before it, accept the route's packets?
    (A chain's policy is listed after all its rules.)"""
    for rule in rules:
        if rule is upto:
            return False
        if rule.verdict == "accept" and rule.base == upto.base and _outputs_hit(rule, route):
            return True
    return False


def _undecided(rule: FirewallRule, route: RouteInfo, outs: list[str]) -> list[str]:
    """The conditions of `rule` that the route cannot decide (a port, a mark, a state)."""
    return sorted(
        {c.text for c in rule.conditions for o in outs if _condition(c, route, o) is None}
    )


def _name(route: RouteInfo) -> str:
    return route_name(route.source, route.group, route.table)


def _drop_finding(rule: FirewallRule, route: RouteInfo, outs: list[str], counted: str) -> Finding:
    undo = f" (or remove it: `{rule.undo}`)" if rule.undo else ""
    undecided = _undecided(rule, route, outs)
    verb = f"{rule.verdict}s it" if not undecided else f"may {rule.verdict} it"
    unless = f"; it also matches on {', '.join(undecided)}" if undecided else ""
    return Finding(
        PROBLEM,
        "firewall",
        f"{_name(route)}: the kernel forwards it out of {' '.join(outs)}, but {rule.where} "
        f"{verb}{counted}{unless}: the multicast counters count a packet out before the "
        f"firewall sees it; accept the flow before that rule{undo}",
    )


def _policy_finding(
    rule: FirewallRule, route: RouteInfo, outs: list[str], counted: str
) -> Finding:
    return Finding(
        PROBLEM,
        "firewall",
        f"{_name(route)}: the kernel forwards it out of {' '.join(outs)}, but {rule.where} "
        f"is {rule.verdict} and no rule of that chain accepts the flow{counted}: the "
        "multicast counters count a packet out before the firewall sees it; add a rule "
        f"accepting {route.group} there",
    )


def _finding(
    rule: FirewallRule,
    route: RouteInfo,
    rules: list[FirewallRule],
    grew: int | None,
    interval: float,
) -> Finding | None:
    outs = _outputs_hit(rule, route) if rule.verdict in DROPPING else []
    if not outs:
        return None
    counted = ""
    if grew:
        counted = f" (its counter {grew})"
        if interval:
            counted = f" (its counter +{grew} in {interval:g} s)"
    if rule.policy:
        if grew == 0 or _accepting(rules, route, rule):
            return None
        return _policy_finding(rule, route, outs, counted)
    if grew is not None:
        return _drop_finding(rule, route, outs, counted) if grew > 0 else None
    # Without a counter only a rule that certainly matches, with no accept before it.
    if all(rule_matches(rule, route, o) for o in outs) and not _accepting(rules, route, rule):
        counted = " (the rule has no counter, so this is what it says, not what it did)"
        return _drop_finding(rule, route, outs, counted)
    return None


def firewall_findings(
    route: RouteInfo, before: list[FirewallRule], after: list[FirewallRule], interval: float
) -> list[Finding]:
    """The rules (and chain policies) that drop `route`'s forwarded packets."""
    old = {r.key: r.packets for r in before}
    findings = []
    for rule in after:
        grew = None if rule.packets is None else rule.packets - (old.get(rule.key) or 0)
        finding = _finding(rule, route, after, grew, interval)
        if finding is not None:
            findings.append(finding)
    return findings
