"""Reconciliation: bring a kernel table in line with its desired state after a change
(desired.py), and keep it there as interfaces come and go and the kernel asks about
flows (upcalls).

The order avoids any gap in forwarding: new VIFs first, then the entries (an add
replaces an entry in place), then the VIFs nothing uses any more; at the 32-slot limit
new interfaces take the slots freed last.
"""

from __future__ import annotations

from collections.abc import Callable

from ..kernel import Upcall, UpcallKind
from ..model import Route, RouteKey
from .change import Change
from .desired import TableChange
from .events import VifAdded, VifRemoved
from .learned import Flows
from .table import SG, Table
from .tables import watch_moves


class Reconciler:
    def __init__(
        self,
        routes: dict[RouteKey, Route],
        flows: Flows,
        ifindex_of: Callable[[str], int | None],
    ) -> None:
        self._routes = routes  # the configured routes (shared with the engine)
        self._flows = flows
        self._ifindex_of = ifindex_of

    def reconcile(self, table: Table, wanted: TableChange, change: Change) -> None:
        allocator = table.vifs
        names = wanted.names
        freed = [n for n in names if n in allocator.slots and not allocator.needed(n)]
        new = [n for n in names if n not in allocator.slots and allocator.needed(n)]
        # New interfaces get a slot (not one being freed: its entries still point at it)
        # and their VIF, before any entry refers to them.
        late = self._add_vifs(table, new, {allocator.slots[n] for n in freed}, change)
        for name in wanted.retuned:  # a new TTL threshold: add the VIF again
            if name in table.live and name in allocator.slots:
                table.remove_vif(name, change.undo)
                self.install_vif(table, name, change)
        self._write_exact(table, wanted.exact, change)
        for name in wanted.retuned:
            self.sync_users_of(table, name, change)
        if wanted.templates_changed or wanted.retuned:
            self._flows.rematch(table, change)
            watch_moves(table)
        for name in freed:
            self._free_vif(table, name, change)
        for name in late:  # at the slot limit: the slots freed just now
            allocator.allocate(name, set(), change.undo)
            self._add_vif(table, name, change)
            self.sync_users_of(table, name, change)

    def _add_vifs(
        self, table: Table, names: list[str], avoid: set[int], change: Change
    ) -> list[str]:
        """Give each name a slot not in `avoid` and install its VIF; the names that
        found no slot."""
        late = []
        for name in names:
            if table.vifs.allocate(name, avoid, change.undo) is None:
                late.append(name)
            else:
                self._add_vif(table, name, change)
        return late

    def _add_vif(self, table: Table, name: str, change: Change) -> None:
        self.install_vif(table, name, change)
        change.report(VifAdded(table, name))

    def _free_vif(self, table: Table, name: str, change: Change) -> None:
        """Nothing uses `name` any more: it loses its VIF and slot."""
        self._flows.forget_interface(table, name, change)
        slot = table.vifs.slots[name]
        table.remove_vif(name, change.undo)
        table.vifs.release(name, change.undo)
        change.report(VifRemoved(table, name, slot))

    def _write_exact(
        self, table: Table, exact: list[tuple[RouteKey, Route | None]], change: Change
    ) -> None:
        """The changed exact routes' entries, in place (an add replaces: no gap)."""
        if table.learned:  # a configured route may take over a learned flow
            for key, route in exact:
                self.install_exact(table, key.sg, route, change)
            return
        want = table.want
        table.set_entries(
            ((key.sg, want(r.input, r.outputs) if r is not None else None) for key, r in exact),
            change.undo,
            change.strict,
        )

    def install_vif(self, table: Table, name: str, change: Change) -> None:
        """Add the VIF of `name` (which holds a slot) if its interface exists."""
        index = self._ifindex_of(name)
        if index is not None and table.sock is not None:
            table.install_vif(name, index, change.undo, change.strict)

    def sync_exact(self, table: Table, key: RouteKey, change: Change) -> None:
        self.install_exact(table, key.sg, self._routes.get(key), change)

    def install_exact(self, table: Table, sg: SG, route: Route | None, change: Change) -> None:
        """Make the kernel entry `sg` match its configured exact route (None: removed)."""
        if route is None:
            table.set_entry(sg, None, change.undo, change.strict)
            return
        if table.learned and sg in table.learned:  # a configured route takes over
            self._flows.drop(table, sg, change, kernel=False)
        table.set_entry(sg, table.want(route.input, route.outputs), change.undo, change.strict)

    def keys_using(self, table: Table, name: str) -> list[RouteKey]:
        """The configured routes of `table` that use interface `name` (a scan: hotplug
        and errors only)."""
        if name not in table.vifs.users:
            return []
        family, number = table.family, table.table
        return [
            key
            for key, route in self._routes.items()
            if key.table == number
            and key.family == family
            and (route.input == name or name in route.outputs)
        ]

    def sync_users_of(self, table: Table, name: str, change: Change) -> None:
        """Rewrite every entry (configured or learned) that involves interface `name`."""
        for key in self.keys_using(table, name):
            if not key.is_template:
                self.sync_exact(table, key, change)
        for sg, learned in list(table.learned.items()):
            if name == learned.input or name in learned.outputs:
                want = table.want(learned.input, learned.outputs)
                table.set_entry(sg, want, change.undo, change.strict)

    def on_upcall(self, table: Table, upcall: Upcall, change: Change) -> None:
        """The kernel asks about a flow: a configured exact route's entry is installed
        again; otherwise the flow is learned (NOCACHE) or moved (WRONGVIF)."""
        slot_owner = table.live_vifs.get(upcall.vif)
        if slot_owner is None:
            return
        arrival = slot_owner[0]
        if upcall.kind == UpcallKind.NOCACHE:
            key = table.exact.get((upcall.source, upcall.group))
            if key is not None:
                self.sync_exact(table, key, change)
            else:
                self._flows.on_nocache(table, upcall, arrival, change)
        elif upcall.kind == UpcallKind.WRONGVIF:
            self._flows.on_wrongvif(table, upcall, arrival, change)

    def install_table(self, table: Table, change: Change) -> None:
        """A table's socket just opened: install all its VIFs and routes."""
        for name in table.vifs.slots:
            self.install_vif(table, name, change)
        for key in list(table.exact.values()):
            self.sync_exact(table, key, change)
