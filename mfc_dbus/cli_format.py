"""Output of the mfc-dbus command: aligned tables for people, stable JSON for programs.

The JSON keys are documented in man/mfc-dbus.1 and README.md; change them only
by adding keys.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from .client_routes import RouteInfo
from .client_signals import Event
from .client_vifs import VifInfo

BLOCKING = "(drop)"  # the outputs of a route with none: its flow is dropped and counted


def route_json(route: RouteInfo) -> dict[str, Any]:
    return {
        "source": route.source,
        "group": route.group,
        "input": route.input,
        "outputs": list(route.outputs),
        "state": route.state,
        "family": route.family,
        "table": route.table,
        "persistent": route.persistent,
        "owner": route.owner,
        "missing": list(route.missing),
        "packets": route.packets,
        "bytes": route.bytes,
        "wrong_if": route.wrong_if,
        "origin": route.origin,
    }


def vif_json(vif: VifInfo) -> dict[str, Any]:
    return {
        "interface": vif.interface,
        "index": vif.index,
        "family": vif.family,
        "table": vif.table,
        "ttl_threshold": vif.ttl_threshold,
        "explicit": vif.explicit,
        "state": vif.state,
        "in_packets": vif.in_packets,
        "out_packets": vif.out_packets,
        "in_bytes": vif.in_bytes,
        "out_bytes": vif.out_bytes,
        "mrdisc": vif.mrdisc,
    }


def dumps(value: Any, pretty: bool = False) -> str:
    return json.dumps(value, indent=2 if pretty else None, sort_keys=False)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Collection[int] = frozenset()
) -> str:
    """Aligned columns; `right` holds the indexes of right-aligned (numeric) columns."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    if not text_rows:
        return ""
    widths = [len(h) for h in headers]
    _widen(widths, text_rows)
    return _aligned([list(headers), *text_rows], widths, right)


def _widen(widths: list[int], rows: Iterable[Sequence[str]]) -> None:
    for i, column in enumerate(zip(*rows, strict=False)):  # column by column: 10,000 rows a page
        widths[i] = max(widths[i], *map(len, column))


def _aligned(rows: Iterable[Sequence[str]], widths: Sequence[int], right: Collection[int]) -> str:
    """Each row's cells padded to their column's width (right-aligned in `right`),
    two spaces apart, trailing spaces dropped: one format string for every row."""
    line = "  ".join(f"{{:{'>' if i in right else '<'}{width}}}" for i, width in enumerate(widths))
    return "\n".join([line.format(*row).rstrip() for row in rows])


def _route_sort_key(route: RouteInfo) -> tuple:
    return (route.family, route.table, route.group, route.source)


def kept_how(origin: str | None, owner: str | None, persistent: bool) -> str:
    """The STATE column's mark of how a route or join is kept: from a configuration
    file, leased to a client, or not saved across restarts."""
    if origin:
        return f" config {origin}"
    if owner:
        return " lease"
    return "" if persistent else " temporary"


def outputs_text(outputs: Sequence[str]) -> str:
    """A route's outputs for people; none is a blocking route, which drops its flow."""
    return " ".join(outputs) or BLOCKING


def _route_headers(show_table: bool, stats: bool) -> list[str]:
    headers = ["SOURCE", "GROUP", "INPUT", "OUTPUTS", "STATE"]
    if show_table:
        headers.append("TABLE")
    if stats:
        headers += ["PACKETS", "BYTES", "WRONG-IF"]
    return headers


def _route_row(route: RouteInfo, show_table: bool, stats: bool) -> list[Any]:
    state = route.state
    if route.missing:
        state += f" (missing {','.join(route.missing)})"
    state += kept_how(route.origin, route.owner, route.persistent)
    row: list[Any] = [route.source, route.group, route.input, outputs_text(route.outputs), state]
    if show_table:
        row.append(route.table)
    if stats:
        row += [route.packets, route.bytes, route.wrong_if]
    return row


def _numbers(headers: Sequence[str], stats: bool) -> set[int]:
    first_number = len(headers) - 3 if stats else len(headers)
    return set(range(first_number, len(headers)))


def routes_table(routes: Sequence[RouteInfo], stats: bool = False) -> str:
    show_table = any(r.table for r in routes)
    headers = _route_headers(show_table, stats)
    rows = [_route_row(route, show_table, stats) for route in sorted(routes, key=_route_sort_key)]
    return table(headers, rows, right=_numbers(headers, stats))


class StreamedRoutesTable:
    """routes_table for routes that come in pages, printed as they come: in the
    service's order (family, table, group, source by value), always with the TABLE
    column (a later page may hold another table), each column as wide as the widest
    cell so far (a later page may widen it, never narrow it)."""

    def __init__(self, stats: bool = False) -> None:
        self._stats = stats
        self._headers = _route_headers(True, stats)
        self._widths = [len(header) for header in self._headers]
        self._right = _numbers(self._headers, stats)
        self._started = False

    def page(self, routes: Sequence[RouteInfo]) -> str:
        """The lines of one page (the headers before the first row), "" for none."""
        rows = [[str(cell) for cell in _route_row(route, True, self._stats)] for route in routes]
        if not rows:
            return ""
        _widen(self._widths, rows)
        if not self._started:
            self._started = True
            rows.insert(0, self._headers)
        return _aligned(rows, self._widths, self._right)


class JsonArrayStream:
    """One JSON array written a few items at a time: the same text as dumps(list) with
    the same `pretty` once every part is joined."""

    def __init__(self, pretty: bool = False) -> None:
        self._pretty = pretty
        self._count = 0

    def items(self, values: Iterable[Any]) -> str:
        parts = []
        for value in values:
            text = dumps(value, self._pretty)
            if self._pretty:
                text = "  " + text.replace("\n", "\n  ")
                parts.append(("[\n" if self._count == 0 else ",\n") + text)
            else:
                parts.append(("[" if self._count == 0 else ", ") + text)
            self._count += 1
        return "".join(parts)

    def close(self) -> str:
        if self._count == 0:
            return "[]"
        return "\n]" if self._pretty else "]"


def vifs_table(vifs: Sequence[VifInfo]) -> str:
    show_table = any(v.table for v in vifs)
    headers = ["INDEX", "INTERFACE", "FAMILY"]
    if show_table:
        headers.append("TABLE")
    headers += ["THRESHOLD", "STATE", "IN-PKTS", "IN-BYTES", "OUT-PKTS", "OUT-BYTES"]
    rows = []
    ordered = sorted(vifs, key=lambda v: (v.family, v.table, v.index is None, v.index or 0))
    for vif in ordered:
        state = vif.state + ("" if vif.explicit else " auto") + (" mrdisc" if vif.mrdisc else "")
        row: list[Any] = [
            "-" if vif.index is None else vif.index,
            vif.interface,
            vif.family,
        ]
        if show_table:
            row.append(vif.table)
        row += [
            vif.ttl_threshold,
            state,
            vif.in_packets,
            vif.in_bytes,
            vif.out_packets,
            vif.out_bytes,
        ]
        rows.append(row)
    numeric = {0, len(headers) - 6, *range(len(headers) - 4, len(headers))}
    return table(headers, rows, right=numeric)


def status_text(props: dict[str, Any]) -> str:
    families = props.get("Families") or []
    lines = [
        f"version:  {props.get('Version', '?')}",
        f"routes:   {props.get('RouteCount', 0)}",
        f"vifs:     {props.get('VifCount', 0)}",
        f"groups:   {props.get('GroupCount', 0)}",
        f"families: {' '.join(families) if families else 'none'}",
    ]
    return "\n".join(lines)


def status_json(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": props.get("Version"),
        "routes": props.get("RouteCount"),
        "vifs": props.get("VifCount"),
        "groups": props.get("GroupCount"),
        "families": list(props.get("Families") or []),
    }


def event_text(event: Event) -> str:
    """One line per event, in the words of `ip monitor`."""
    a = event.args
    if event.name == "RouteAdded":
        outputs = outputs_text(a["outputs"])
        route = f"{a['source']} {a['group']} iif {a['input']} oifs {outputs}"
        return f"route added {route}{_in_table(a)}"
    if event.name == "RouteRemoved":
        return f"route removed {a['source']} {a['group']} iif {a['input']}{_in_table(a)}"
    if event.name in ("VifAdded", "VifRemoved"):
        verb = "added" if event.name == "VifAdded" else "removed"
        index = "pending" if a["index"] is None else f"index {a['index']}"
        return f"vif {verb} {a['interface']} {index} {a['family']}{_in_table(a)}"
    if event.name in ("GroupJoined", "GroupLeft"):
        verb = "joined" if event.name == "GroupJoined" else "left"
        table = f" table {a['table']}" if a.get("table") else ""
        return f"group {verb} {a['source']} {a['group']} dev {a['interface']}{table}"
    if event.name == "PropertiesChanged":
        changed = " ".join(f"{k}={_scalar(v)}" for k, v in sorted(a["changed"].items()))
        return f"properties {changed}".rstrip()
    if event.name == "ServiceStarted":
        return f"service started ({a.get('owner')})"
    if event.name == "ServiceStopped":
        return "service stopped"
    return event.name


def _in_table(args: dict[str, Any]) -> str:
    """ " table N" for a table other than the default one (as `route show` marks it)."""
    return f" table {args['table']}" if args.get("table") else ""


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def event_json(event: Event) -> dict[str, Any]:
    return {"event": event.name, **event.args}
