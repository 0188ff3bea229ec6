"""A configuration back into mfc-dbus.conf(5) text (`mfc-dbus config export`)."""

from __future__ import annotations

from collections.abc import Iterable

from .check import ANY_SOURCE, ConfigInterface, ConfigJoin, ConfigRoute

DEFAULT_TTL_THRESHOLD = 1


def render(
    interfaces: Iterable[ConfigInterface],
    joins: Iterable[ConfigJoin],
    routes: Iterable[ConfigRoute],
) -> str:
    """phyint lines first (smcrouted needs them before the lines that use them), then
    group joins, then routes; each section in a stable order."""
    lines = [render_interface(i) for i in sorted(interfaces, key=_interface_order)]
    lines += [render_join(j) for j in sorted(joins, key=_join_order)]
    lines += [render_route(r) for r in sorted(routes, key=_route_order)]
    return "".join(line + "\n" for line in lines)


def render_route(route: ConfigRoute) -> str:
    words = ["mroute", "from", route.input, *_addresses(route.source, route.group)]
    words += _table(route.table)
    return " ".join([*words, "to", *route.outputs])


def render_join(join: ConfigJoin) -> str:
    words = ["mgroup", "from", join.interface, *_addresses(join.source, join.group)]
    return " ".join(words + _table(join.table))


def render_interface(interface: ConfigInterface) -> str:
    words = ["phyint", interface.interface, "enable" if interface.enabled else "disable"]
    if interface.mrdisc:
        words.append("mrdisc")
    if interface.ttl_threshold != DEFAULT_TTL_THRESHOLD:
        words += ["ttl-threshold", str(interface.ttl_threshold)]
    return " ".join(words + _table(interface.table))


def _addresses(source: str, group: str) -> list[str]:
    words = [] if source in (ANY_SOURCE, "") else ["source", source]
    return words + ["group", group]


def _table(table: int) -> list[str]:
    return ["table", str(table)] if table else []


def _interface_order(interface: ConfigInterface) -> tuple:
    return (interface.table, interface.interface)


def _join_order(join: ConfigJoin) -> tuple:
    return (join.table, join.interface, join.group, join.source)


def _route_order(route: ConfigRoute) -> tuple:
    return (route.table, route.group, route.source, route.input)
