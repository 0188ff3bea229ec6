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

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
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
_SIZE_OF = {Family.IPV4: 4, Family.IPV6: 16}
_ORDER = itemgetter(0)
_NO_COUNTERS = Counters()


def _table_of_row(row: tuple[Any, ...]) -> tuple[int, int]:
    return row[0][:2]


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
    routes: Mapping[RouteKey, Route],
    tables: Tables,
    family: Family | None,
    table: int | None,
    after: Order | None,
) -> list[tuple[Any, ...]]:
    """(order, route) for each configured route, (order, table, sg, learned) for each
    flow learned from a template, of the family and table asked for (None: all), whose
    order is past `after`. Built in comprehensions: every page visits every route."""
    size = None if family is None else _SIZE_OF[family]
    low: tuple[Any, ...] = () if after is None else after  # () is before every order
    rows: list[tuple[Any, ...]] = [
        (order, route)
        for key, route in routes.items()
        for source, group in (key.sg,)
        if (size is None or len(group) == size) and (table is None or key.table == table)
        and (order := (len(group), key.table, group, key.group_len, source, key.source_len,
                       False, key.input)) > low  # order_of(key), inline
    ]  # fmt: skip
    for found in tables.matching(family, table):
        number = found.table
        bits = 8 * (4 if found.family is Family.IPV4 else 16)
        rows += [
            (order, found, sg, learned)
            for sg, learned in found.learned.items()
            if learned.template is not None
            for source, group in (sg,)
            if (order := (len(group), number, group, bits, source, bits, True, "")) > low
        ]
    return rows


def select(
    rows: list[tuple[Any, ...]], after: Order | None, limit: int | None
) -> tuple[list[tuple[Any, ...]], bool]:
    """The first `limit` rows (all: None) after `after` in order, and whether more follow.
    Orders are unique, so rows are sorted by their first element alone."""
    if after is not None:
        rows = [row for row in rows if row[0] > after]
    rows.sort(key=_ORDER)
    if limit is None or len(rows) <= limit:
        return rows, False
    return rows[:limit], True


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
    rows = _rows(routes, tables, family, table, decode_token(after) if after else None)
    chosen, more = select(rows, None, limit)
    statuses = _statuses(chosen, tables)
    return RoutePage(statuses, encode_token(chosen[-1][0]) if more else None)


def _statuses(chosen: list[tuple[Any, ...]], tables: Tables) -> list[RouteStatus]:
    """The rows' statuses. Rows come in order, so those of one table are together:
    each such run's counters are read in one go."""
    statuses: list[RouteStatus] = []
    for (size, number), run in groupby(chosen, key=_table_of_row):
        found = tables.find(_SIZES[size], number)
        assert found is not None, "a listed route's table exists from its first change"
        statuses += _table_statuses(found, list(run), 8 * size)
    return statuses


def _table_statuses(found: Table, rows: list[tuple[Any, ...]], bits: int) -> list[RouteStatus]:
    flows: dict[RouteKey, list[SG]] | None = None
    wanted: list[SG] = []
    for row in rows:
        order = row[0]
        if len(row) == 4:  # (order, table, sg, learned): a learned flow
            wanted.append(row[2])
        elif order[3] == bits and order[5] == bits:  # an exact (S,G)
            wanted.append(row[1].key.sg)
        else:  # a template: the sum over its learned flows
            flows = flows_by_template(found) if flows is None else flows
            wanted += flows.get(row[1].key, ())
    counters = read_counters(found, wanted)
    statuses = []
    for row in rows:
        if len(row) == 4:
            sg = row[2]
            statuses.append(learned_status(found, sg, row[3], counters.get(sg, _NO_COUNTERS)))
            continue
        route = row[1]
        key = route.key
        if flows is not None and key.is_template:
            got = summed(counters, flows.get(key, ()))
        else:
            got = counters.get(key.sg, _NO_COUNTERS)
        statuses.append(configured_status(found, route, got))
    return statuses
