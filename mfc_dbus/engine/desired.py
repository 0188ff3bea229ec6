"""The desired-state half of a change: the configured routes and, per table, the exact
routes, the templates, the VIF users and the explicit VIFs, changed (undoably) before
the kernel is reconciled with them (reconcile.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import FAMILY_OF_SIZE, Route, RouteKey, VifConfig
from .change import Change, RouteChange, VifId
from .events import VifAdded
from .sockets import TableId
from .table import Table
from .undo import put_or_pop

Shape = tuple[str, tuple[str, ...]]  # (input, outputs): routes share a few


@dataclass
class TableChange:
    """What a change did to one table's desired state."""

    # Interfaces whose users or explicit VIF changed, in order of first use (slots
    # follow it).
    names: dict[str, None] = field(default_factory=dict)
    exact: list[tuple[RouteKey, Route | None]] = field(default_factory=list)  # (key, now)
    templates_changed: bool = False
    retuned: set[str] = field(default_factory=set)  # interfaces with a new TTL threshold
    # The change of each (input, outputs) combination's user count: counting these is
    # cheaper than counting every interface name of every route.
    shapes: dict[Shape, int] = field(default_factory=dict)


@dataclass
class DesiredChange:
    routes: list[RouteChange]  # the configured routes changed, (before, after)
    tables: dict[TableId, TableChange]


def change_desired(
    routes: dict[RouteKey, Route],
    wanted: dict[RouteKey, Route | None],
    vifs: dict[VifId, VifConfig | None],
    tables: dict[TableId, Table],
    change: Change,
) -> DesiredChange:
    """Apply `wanted` (key -> route, None: removed) to `routes` and the tables'
    desired state, and `vifs` to their explicit VIFs."""
    result = DesiredChange([], {tid: TableChange() for tid in tables})
    change.undo.push(_undo_routes, routes, tables, result.routes)  # filled below
    _change_routes(routes, wanted, tables, result)
    for tid, table_change in result.tables.items():
        _count_users(tables[tid], table_change, change)
    for (family, number, name), config in vifs.items():
        tid = (family, number)
        _change_vif(tables[tid], result.tables[tid], name, config, change)
    return result


def _change_routes(
    routes: dict[RouteKey, Route],
    wanted: dict[RouteKey, Route | None],
    tables: dict[TableId, Table],
    result: DesiredChange,
) -> None:
    """The hot loop of a batch: keep it flat."""
    add_result = result.routes.append
    size = 0  # of the group address: the family, without the property's cost
    number = -1
    table: Table
    table_change: TableChange
    for key, new in wanted.items():
        old = routes.get(key)
        if old is new or (old is not None and old == new):
            continue
        if len(key.sg[1]) != size or key.table != number:  # batches share a table
            size, number = len(key.sg[1]), key.table
            tid = (FAMILY_OF_SIZE[size], number)
            table = tables[tid]
            table_change = result.tables[tid]
        shapes = table_change.shapes
        if old is not None:
            shape = (old.input, old.outputs)
            shapes[shape] = shapes.get(shape, 0) - 1
        if new is not None:
            shape = (new.input, new.outputs)
            shapes[shape] = shapes.get(shape, 0) + 1
            routes[key] = new
        else:
            del routes[key]
        add_result((old, new))
        if key.is_template:
            _change_template(table, key, new)
            table_change.templates_changed = True
        else:
            _change_exact(table, key, new)
            table_change.exact.append((key, new))


def _change_template(table: Table, key: RouteKey, route: Route | None) -> None:
    if route is None:
        table.templates.remove(key)
    else:
        table.templates.put(route)


def _change_exact(table: Table, key: RouteKey, route: Route | None) -> None:
    if route is None:
        del table.exact[key.sg]
    else:
        table.exact[key.sg] = key


def _count_users(table: Table, table_change: TableChange, change: Change) -> None:
    counts: dict[str, int] = {}  # ordered: slots follow first use
    for (input, outputs), delta in table_change.shapes.items():
        counts[input] = counts.get(input, 0) + delta
        for name in outputs:
            counts[name] = counts.get(name, 0) + delta
    allocator = table.vifs
    for name, delta in counts.items():
        if delta:
            allocator.add_users(name, delta, change.undo)
    table_change.names.update(dict.fromkeys(counts))


def _change_vif(
    table: Table,
    table_change: TableChange,
    name: str,
    config: VifConfig | None,
    change: Change,
) -> None:
    old_threshold = table.vifs.threshold(name)
    table.vifs.set_explicit(name, config, change.undo)
    table_change.names[name] = None
    if table.vifs.threshold(name) != old_threshold:
        table_change.retuned.add(name)
    change.report(VifAdded(table, name))


def _undo_routes(
    routes: dict[RouteKey, Route], tables: dict[TableId, Table], changes: list[RouteChange]
) -> None:
    for old, new in reversed(changes):
        changed = new if new is not None else old
        assert changed is not None
        key = changed.key
        put_or_pop(routes, key, old)
        table = tables[(key.family, key.table)]
        if key.is_template:
            _change_template(table, key, old)
        else:
            put_or_pop(table.exact, key.sg, key if old is not None else None)
