"""`nft -j list ruleset` -> the FirewallRules forwarded multicast passes.

Only tables of family ip, ip6 and inet carry forwarded IP packets; of their chains,
the base chains on the forward and postrouting hooks and the chains they jump or go
to. A rule reached through a jump inherits the jump rule's conditions. Expressions
this module does not know become conditions of unknown outcome, never errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .firewall import AddressMatch, Condition, FirewallRule, Fixed, InterfaceMatch
from .matching import AddressRange

FAMILIES = {
    "ip": frozenset({"ipv4"}),
    "ip6": frozenset({"ipv6"}),
    "inet": frozenset({"ipv4", "ipv6"}),
}
HOOKS = ("forward", "postrouting")
INTERFACE_KEYS = {"iifname": "in", "iif": "in", "oifname": "out", "oif": "out"}
VERDICTS = ("drop", "reject", "accept", "jump", "goto")

ChainKey = tuple[str, str, str]  # family, table, chain


class Ruleset:
    """The parts of one `nft -j list ruleset` reading that matter here."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.chains: dict[ChainKey, dict[str, Any]] = {}
        self.rules: dict[ChainKey, list[dict[str, Any]]] = {}
        self.sets: dict[ChainKey, list[Any]] = {}
        for item in document.get("nftables", []):
            for kind, body in item.items():
                self._take(kind, body)

    def _take(self, kind: str, body: Any) -> None:
        if not isinstance(body, dict) or body.get("family") not in FAMILIES:
            return
        if kind == "chain":
            self.chains[(body["family"], body["table"], body["name"])] = body
        elif kind == "rule":
            key = (body["family"], body["table"], body["chain"])
            self.rules.setdefault(key, []).append(body)
        elif kind in ("set", "map"):
            self.sets[(body["family"], body["table"], body["name"])] = body.get("elem", [])


def _values(right: Any, sets: dict[ChainKey, list[Any]], where: ChainKey) -> list[Any] | None:
    """The values a match compares with: one, an anonymous set or a named set."""
    if isinstance(right, str) and right.startswith("@"):
        elems = sets.get((where[0], where[1], right[1:]))
        return None if elems is None else list(elems)
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return [right]


def _range(value: Any) -> AddressRange:
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"].get("val")
    if isinstance(value, str):
        return AddressRange.parse(value)
    if isinstance(value, dict) and "prefix" in value:
        return AddressRange.parse(f"{value['prefix']['addr']}/{value['prefix']['len']}")
    if isinstance(value, dict) and "range" in value:
        low, high = value["range"]
        return AddressRange.parse(f"{low}-{high}")
    raise ValueError(f"not an address: {value!r}")


def _address(left: dict, op: str, values: list[Any]) -> Condition:
    payload = left["payload"]
    version = 4 if payload.get("protocol") == "ip" else 6
    ranges = tuple(_range(v) for v in values)
    return AddressMatch(payload["field"], version, ranges, negated=op == "!=")


def _meta(key: str, op: str, values: list[Any]) -> Condition | None:
    if key in INTERFACE_KEYS and all(isinstance(v, str) for v in values):
        return InterfaceMatch(INTERFACE_KEYS[key], tuple(values), negated=op == "!=")
    if key == "pkttype" and all(isinstance(v, str) for v in values):
        return Fixed(("multicast" in values) != (op == "!="), "meta pkttype")
    if key == "nfproto" and all(isinstance(v, str) for v in values):
        return None  # the family restriction is already in `ip`/`ip6` matches
    return None


def _operand(value: Any) -> str:
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if kind in ("payload", "meta", "ct") and isinstance(body, dict):
            words = [body.get("protocol") or (kind if kind != "payload" else "")]
            words += [body.get("key", ""), body.get("field", "")]
            return " ".join(w for w in words if w)
        if kind == "prefix" and isinstance(body, dict):
            return f"{body.get('addr')}/{body.get('len')}"
        if kind == "range" and isinstance(body, list):
            return "-".join(_operand(v) for v in body)
        if kind == "set" and isinstance(body, list):
            return "{ " + ", ".join(_operand(v) for v in body) + " }"
    return json.dumps(value, sort_keys=True)


def describe(match: dict[str, Any]) -> str:
    """A match as `nft list ruleset` writes it, near enough to recognise it."""
    op = "" if match.get("op") in ("==", "in") else f" {match.get('op')}"
    return f"{_operand(match.get('left'))}{op} {_operand(match.get('right'))}"


def condition(
    match: dict[str, Any], sets: dict[ChainKey, list[Any]], where: ChainKey
) -> Condition:
    """One `match` expression as a Condition; unknown ones have an unknown outcome."""
    unknown = Fixed(None, describe(match))
    left, op = match.get("left"), match.get("op")
    values = _values(match.get("right"), sets, where)
    if not isinstance(left, dict) or op not in ("==", "!=", "in") or values is None:
        return unknown
    try:
        payload = left.get("payload", {})
        if payload.get("protocol") in ("ip", "ip6") and payload.get("field") in ("saddr", "daddr"):
            return _address(left, op, values)
        if "meta" in left:
            return _meta(left["meta"].get("key", ""), op, values) or unknown
    except (ValueError, KeyError, TypeError):
        return unknown
    return unknown


def _verdict(expr: list[dict[str, Any]]) -> tuple[str, str | None]:
    for statement in expr:
        for name in VERDICTS:
            if name in statement:
                target = statement[name].get("target") if name in ("jump", "goto") else None
                return ("jump" if name == "goto" else name), target
    return "other", None


def _counter(expr: list[dict[str, Any]]) -> int | None:
    for statement in expr:
        counter = statement.get("counter")
        if isinstance(counter, dict) and "packets" in counter:
            return int(counter["packets"])
    return None


def _walk(
    ruleset: Ruleset, chain: ChainKey, base: ChainKey, inherited: tuple[Condition, ...],
    visiting: frozenset[ChainKey],
) -> Iterator[FirewallRule]:  # fmt: skip
    for rule in ruleset.rules.get(chain, []):
        expr = rule.get("expr", [])
        own = tuple(condition(s["match"], ruleset.sets, chain) for s in expr if "match" in s)
        verdict, target = _verdict(expr)
        family, table, name = chain
        yield FirewallRule(
            key=("nft", *chain, rule["handle"]),
            where=f"nftables rule {family} {table} {name} handle {rule['handle']}",
            families=FAMILIES[family],
            verdict=verdict,
            packets=_counter(expr),
            conditions=inherited + own,
            base=base,
            undo=f"nft delete rule {family} {table} {name} handle {rule['handle']}",
        )
        jumped = (family, table, target or "")
        if target and jumped in ruleset.chains and jumped not in visiting:
            yield from _walk(ruleset, jumped, base, inherited + own, visiting | {jumped})


def forward_rules(document: dict[str, Any]) -> list[FirewallRule]:
    """The rules and policies of forward/postrouting base chains and what they jump to."""
    ruleset = Ruleset(document)
    found: list[FirewallRule] = []
    for key, chain in ruleset.chains.items():
        if chain.get("hook") not in HOOKS:
            continue
        family, table, name = key
        found.extend(_walk(ruleset, key, key, (), frozenset({key})))
        found.append(
            FirewallRule(
                key=("nft-policy", *key),
                where=f"the policy of nftables chain {family} {table} {name}",
                families=FAMILIES[family],
                verdict=chain.get("policy", "accept"),
                packets=None,
                conditions=(),
                base=key,
                policy=True,
            )
        )
    return found
