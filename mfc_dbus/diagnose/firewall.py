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


@dataclass(frozen=True)
class InterfaceMatch:
    """`iifname`/`oifname`/`iif`/`oif` (nft), `-i`/`-o` (iptables)."""

    direction: str  # "in" or "out"
    names: tuple[str, ...]
    negated: bool = False


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


def _counted(rule: FirewallRule, before: dict[tuple[str | int, ...], int | None]) -> int | None:
    if rule.packets is None:
        return None
    return rule.packets - (before.get(rule.key) or 0)


def _accepting(rules: list[FirewallRule], base: tuple[str, ...], route: RouteInfo) -> bool:
    """May a rule reached from chain `base` accept the route's packets?"""
    return any(
        r.verdict == "accept" and not r.policy and r.base == base and _outputs_hit(r, route)
        for r in rules
    )


def _name(route: RouteInfo) -> str:
    return route_name(route.source, route.group, route.table)


def _drop_finding(rule: FirewallRule, route: RouteInfo, outs: list[str], counted: str) -> Finding:
    undo = f" (or remove it: `{rule.undo}`)" if rule.undo else ""
    return Finding(
        PROBLEM,
        "firewall",
        f"{_name(route)}: the kernel forwards it out of {' '.join(outs)}, but {rule.where} "
        f"{rule.verdict}s it{counted}: the multicast counters count a packet out before "
        f"the firewall sees it; accept the flow before that rule{undo}",
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


def firewall_findings(
    route: RouteInfo, before: list[FirewallRule], after: list[FirewallRule], interval: float
) -> list[Finding]:
    """The rules (and chain policies) that drop `route`'s forwarded packets."""
    old = {r.key: r.packets for r in before}
    span = f" in {interval:g} s" if interval else ""
    findings = []
    for rule in after:
        outs = _outputs_hit(rule, route) if rule.verdict in DROPPING else []
        if not outs:
            continue
        grew = _counted(rule, old)
        if rule.policy:
            if (grew is None or grew > 0) and not _accepting(after, rule.base, route):
                counted = f" (its counter +{grew}{span})" if grew else ""
                findings.append(_policy_finding(rule, route, outs, counted))
        elif grew is not None and grew > 0:
            findings.append(_drop_finding(rule, route, outs, f" (its counter +{grew}{span})"))
        elif grew is None and all(rule_matches(rule, route, o) for o in outs):
            counted = " (the rule has no counter, so this is what it says, not what it did)"
            findings.append(_drop_finding(rule, route, outs, counted))
    return findings
