"""ListRoutes' read path: configured and learned routes in one stable order, a page of
them after a resume token, with the counters of each table read together.

The order is by value (family, table, group, group prefix length, source, source prefix
length, configured before learned, a template's input), never by when a route came: a
page starts after the last row of the previous one whatever changed in between, so
paging through a table that changes meanwhile never repeats or skips a route that
existed throughout. The token is that last row's order, packed and written in hex:
opaque to callers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from ..model import Counters, Family, Route, RouteKey, RouteStatus
from .status import (
    configured_status,
    flows_by_template,
    learned_status,
    read_counters,
    summed,
)
from .table import SG, Table
from .tables import KernelTables as Tables

# (address size, table, group, group length, source, source length, learned, input:
# a template's, "" for an exact (S,G))
Order = tuple[int, int, bytes, int, bytes, int, bool, str]
_SIZES = {4: Family.IPV4, 16: Family.IPV6}
_TOKEN_HELP = "pass the 'next' value of the previous page's last row unchanged"


@dataclass(frozen=True, slots=True)
class RoutePage:
    statuses: list[RouteStatus]
    next: str | None  # where the next page starts; None: this page is the last


def order_of(key: RouteKey, learned: bool = False) -> Order:
    source, group = key.sg
    return (len(group), key.table, group, key.group_len, source, key.source_len, learned,
            key.input)  # fmt: skip


def encode_token(order: Order) -> str:
    size, table, group, group_len, source, source_len, learned, input_ = order
    packed = bytes((size,)) + table.to_bytes(4, "big") + group + bytes((group_len,))
    return (packed + source + bytes((source_len, learned)) + input_.encode()).hex()


def decode_token(token: str) -> Order:
    """The order a token names; InvalidArgument for anything ListRoutes did not make."""
    try:
        packed = bytes.fromhex(token)
    except ValueError:
        packed = b""
    size = packed[0] if packed else 0
    fixed = 2 * size + 8  # then a template's input: an interface name, printable ASCII
    input_ = packed[fixed:]
    if (
        size not in _SIZES
        or not fixed <= len(packed) <= fixed + 15
        or packed[fixed - 1] > 1
        or not (input_.isascii() and input_.decode().isprintable())
    ):
        raise InvalidArgument(
            f"ListRoutes filter after={token!r} is not a resume token: {_TOKEN_HELP}"
        )
    group_end = 5 + size
    source_at = group_end + 1
    return (
        size,
        int.from_bytes(packed[1:5], "big"),
        packed[5:group_end],
        packed[group_end],
        packed[source_at : source_at + size],
        packed[fixed - 2],
        bool(packed[fixed - 1]),
        input_.decode(),
    )


def _rows(
    routes: Mapping[RouteKey, Route], tables: Tables, family: Family | None, table: int | None
) -> Iterator[tuple[Any, ...]]:
    """(order, route) for each configured route, (order, table, sg, learned) for each
    flow learned from a template, of the family and table asked for (None: all)."""
    for key, route in routes.items():
        if (family is None or key.family is family) and (table is None or key.table == table):
            yield (order_of(key), route)
    for found in tables.matching(family, table):
        number = found.table
        bits = 8 * (4 if found.family is Family.IPV4 else 16)
        for sg, learned in found.learned.items():
            if learned.template is not None:
                source, group = sg
                order = (len(group), number, group, bits, source, bits, True, "")
                yield (order, found, sg, learned)


def select(
    rows: Iterable[tuple[Any, ...]], after: Order | None, limit: int | None
) -> tuple[list[tuple[Any, ...]], bool]:
    """The first `limit` rows (all: None) after `after` in order, and whether more follow.
    Orders are unique, so rows never compare past their first element."""
    if after is not None:
        rows = (row for row in rows if row[0] > after)
    if limit is None:
        return sorted(rows), False
    chosen = heapq.nsmallest(limit + 1, rows)
    return chosen[:limit], len(chosen) > limit


def list_page(
    routes: Mapping[RouteKey, Route],
    tables: Tables,
    family: Family | None = None,
    table: int | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> RoutePage:
    """Configured and learned routes with state and counters: the first `limit` (all:
    None) after the token `after` (from the start: None)."""
    if limit is not None and limit < 1:
        raise InvalidArgument(
            f"ListRoutes filter limit={limit}: give at least 1, or leave it out for every row"
        )
    chosen, more = select(
        _rows(routes, tables, family, table), decode_token(after) if after else None, limit
    )
    statuses = _statuses(chosen, tables)
    return RoutePage(statuses, encode_token(chosen[-1][0]) if more else None)


def _statuses(chosen: list[tuple[Any, ...]], tables: Tables) -> list[RouteStatus]:
    """The rows' statuses, with the counters of each table read in one go."""
    wanted: dict[Table, list[SG]] = {}
    flows: dict[Table, dict[RouteKey, list[SG]]] = {}
    placed: list[tuple[Table, Route | None, Any]] = []
    for row in chosen:
        if len(row) == 2:
            route = row[1]
            found = tables.of(route.key)
            sgs = wanted.setdefault(found, [])
            if route.key.is_template:
                if found not in flows:
                    flows[found] = flows_by_template(found)
                sgs.extend(flows[found].get(route.key, ()))
            else:
                sgs.append(route.key.sg)
            placed.append((found, route, None))
        else:
            _order, found, sg, learned = row
            wanted.setdefault(found, []).append(sg)
            placed.append((found, None, (sg, learned)))
    counters = {found: read_counters(found, sgs) for found, sgs in wanted.items()}
    return [
        _status(found, route, flow, counters[found], flows.get(found))
        for found, route, flow in placed
    ]


def _status(
    found: Table,
    route: Route | None,
    flow: tuple[SG, Any] | None,
    counters: dict[SG, Counters],
    flows: dict[RouteKey, list[SG]] | None,
) -> RouteStatus:
    if route is None:
        assert flow is not None
        sg, learned = flow
        return learned_status(found, sg, learned, counters.get(sg, Counters()))
    key = route.key
    if key.is_template:
        return configured_status(found, route, summed(counters, (flows or {}).get(key, ())))
    return configured_status(found, route, counters.get(key.sg, Counters()))
