"""Multicast routing rules (`ip mrule`, `ip -6 mrule`): which table sees a packet.

The kernel looks a multicast packet up in the table that the first matching mrule
names (ipmr_fib_lookup / ip6mr_fib_lookup); a fresh namespace has one rule, 32767
"from all lookup default" (IPv6: main), which is the service's table 0. A route in
another table forwards only once a rule leads packets from its input there. For a
forwarded packet the rule lookup has iif = the input interface and no oif.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..client import RouteInfo
from ..model import KERNEL_DEFAULT_TABLE, Family
from .matching import AddressRange, Tri, all_of, covers, flow_range, negate
from .report import PROBLEM, Finding, route_name

# Selectors a route does not determine: a rule using one may or may not match.
UNDECIDED = (
    "fwmark",
    "uidrange",
    "ipproto",
    "sport",
    "dport",
    "tos",
    "dsfield",
    "l3mdev",
    "tun_id",
)
NAMED_TABLES = {"default": 253, "main": 254, "local": 255}
# FR_ACT_* of <linux/fib_rules.h>: `ip -N` prints a rule's action as this number.
ACTIONS = {
    "1": "lookup",
    "2": "goto",
    "3": "nop",
    "6": "blackhole",
    "7": "unreachable",
    "8": "prohibit",
}


@dataclass(frozen=True)
class MRule:
    """One element of `ip -N -j mrule show` (tables as numbers)."""

    priority: int
    action: str  # lookup, blackhole, unreachable, prohibit, goto, nop
    table: int | None
    iif: str | None = None
    oif: str | None = None
    src: AddressRange | None = None
    dst: AddressRange | None = None
    undecided: tuple[str, ...] = ()
    negated: bool = False

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> MRule:
        table = item.get("table")
        action = str(item.get("action", "lookup" if table is not None else "nop"))
        return cls(
            priority=int(item.get("priority", 0)),
            action=ACTIONS.get(action, action),
            table=None if table is None else NAMED_TABLES.get(table) or int(table),
            iif=item.get("iif"),
            oif=item.get("oif"),
            src=_prefix(item, "src"),
            dst=_prefix(item, "dst"),
            undecided=tuple(key for key in UNDECIDED if key in item),
            negated="not" in item,
        )

    def text(self) -> str:
        words = [f"{self.priority}:", "not" if self.negated else "", "from all"]
        words += [f"iif {self.iif}" if self.iif else "", f"oif {self.oif}" if self.oif else ""]
        words += [f"{key} ..." for key in self.undecided]
        words += [f"lookup {_table_name(self.table)}" if self.action == "lookup" else self.action]
        return " ".join(w for w in words if w)


def _prefix(item: dict[str, Any], key: str) -> AddressRange | None:
    if item.get(key, "all") == "all":
        return None
    length = item.get(f"{key}len")
    return AddressRange.parse(f"{item[key]}/{length}" if length is not None else item[key])


def _table_name(table: int | None) -> str:
    names = {number: name for name, number in NAMED_TABLES.items()}
    return names.get(table or 0, str(table))


def parse_mrules(document: list[dict[str, Any]]) -> list[MRule]:
    return sorted((MRule.from_json(item) for item in document), key=lambda r: r.priority)


def _matches(rule: MRule, route: RouteInfo) -> Tri:
    selectors: list[Tri] = [
        rule.iif is None or rule.iif == route.input,
        rule.oif is None,  # forwarded packets are looked up with no output interface
        None if rule.undecided else True,
    ]
    if rule.src is not None:
        selectors.append(covers((rule.src,), flow_range(route.source)))
    if rule.dst is not None:
        selectors.append(covers((rule.dst,), flow_range(route.group)))
    result = all_of(selectors)
    return negate(result) if rule.negated else result


def kernel_table(route: RouteInfo) -> int:
    """The kernel's id of the route's table (our 0 is the family's default table)."""
    return route.table or KERNEL_DEFAULT_TABLE[Family(route.family)]


def deciding_rule(route: RouteInfo, rules: list[MRule]) -> MRule | None:
    """The first rule certain to take the route's packets elsewhere than its table;
    None if a rule leads (or may lead) them there."""
    wanted = kernel_table(route)
    for rule in rules:
        hit = _matches(rule, route)
        leads_there = rule.action == "lookup" and rule.table == wanted
        if hit is not False and leads_there:
            return None
        if hit is True and rule.action != "nop":
            return rule
    return None


def _fix(route: RouteInfo, taken: MRule) -> str:
    ip = "ip -6" if route.family == "ipv6" else "ip"
    add = f"{ip} mrule add iif {route.input} lookup {kernel_table(route)}"
    if taken.priority == 0:
        return f"rule {taken.priority} comes first: change it, or delete it and `{add}`"
    if taken.action == "lookup" and taken.table == KERNEL_DEFAULT_TABLE[Family(route.family)]:
        return f"add the rule: `{add}`"
    return f"add the rule before it: `{add} pref {taken.priority - 1}`"


def mrule_findings(route: RouteInfo, rules: list[MRule]) -> list[Finding]:
    """A route in a table no rule leads its packets to: name the rule that would."""
    taken = deciding_rule(route, rules)
    if taken is None:
        return []
    fate = (
        f"looks them up in table {_table_name(taken.table)}"
        if taken.action == "lookup"
        else f"gives them rule action {taken.action}"
    )
    name = route_name(route.source, route.group, route.table)
    return [
        Finding(
            PROBLEM,
            "no-mrule",
            f"{name}: no multicast routing rule leads packets from {route.input} to table "
            f"{_table_name(kernel_table(route))}: the kernel {fate} (rule {taken.text()}), so "
            f"this route never sees them; {_fix(route, taken)}",
        )
    ]
