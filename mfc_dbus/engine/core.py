"""The engine: desired routes and VIFs, reconciled into the kernel's tables.

Desired state: `_routes` (configured routes by key) and, per table, the VIF slots and
explicit VIF settings (vifs.py) and the templates (templates.py). Installed state: per
table, the live VIFs and MFC entries (table.py), changed only together with the
kernel. Every public mutation goes through `_apply`, which validates, changes the
desired state, reconciles the kernel, writes the state file and only then tells the
listeners; any failure undoes everything (journal.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import FamilyUnavailable, InvalidArgument, KernelBusy, MfcError, NotFound
from ..gcpause import gc_paused_if_many
from ..kernel import MrouteSocket, Upcall, UpcallKind
from ..kernel.mfcdump import RawEntry, dump_raw, our_table_id
from ..kernel.netlink import LinkEvent, LinkMonitor, interface_indexes
from ..model import (
    Counters,
    Family,
    Route,
    RouteKey,
    RouteStatus,
    VifConfig,
    VifStatus,
    format_address,
)
from . import ReloadResult
from .adopt import seed_installed
from .journal import NULL, Journal, put_or_pop
from .runtime import RuntimeFile, RuntimeRecord
from .runtime import render as render_runtime
from .sockets import KernelSockets
from .state import (
    SavedState,
    StateFile,
    StateFileError,
    journal_route,
    journal_unroute,
    journal_unvif,
    journal_vif,
    render,
    route_record,
    vif_record,
)
from .table import SG, Learned, Table
from .validate import check_interface_name, check_route, check_routes, check_table, check_vif

log = logging.getLogger(__name__)

TableId = tuple[Family, int]
VifId = tuple[Family, int, str]
_HOST_PREFIX = {Family.IPV4: 32, Family.IPV6: 128}
_NO_COUNTERS = Counters()


def _if_nametoindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _dump_kernel(families: set[Family]) -> dict[Family, list[RawEntry]]:
    """The kernel's MFC entries of `families` (every table), by one dump each; empty
    when rtnetlink fails (the adopted entries are then written again, in place)."""
    try:
        return {family: dump_raw(family) for family in families}
    except OSError as exc:
        log.error("cannot read the adopted kernel tables: %s", exc)
        return {}


def _addresses(sg: SG) -> tuple[str, str]:
    """A packed (S, G) as text, for messages."""
    return format_address(sg[0]), format_address(sg[1])


class Engine:
    """Implements mfc_dbus.engine.EngineAPI."""

    def __init__(
        self,
        state_file: Path | None,
        *,
        learned_expiry: float = 60.0,
        kernel_factory: Callable[[Family, int], MrouteSocket] | None = None,
        runtime_file: Path | None = None,
        link_monitor_factory: Callable[[], LinkMonitor] = LinkMonitor,
        interface_lister: Callable[[], dict[str, int]] = interface_indexes,
        interface_resolver: Callable[[str], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        expiry_interval: float | None = None,
        busy_retry: float = 5.0,
    ) -> None:
        self._state = StateFile(state_file) if state_file is not None else None
        self.learned_expiry = learned_expiry
        self._expiry_interval = expiry_interval or max(0.05, min(learned_expiry / 4, 5.0))
        self._kernel_factory = kernel_factory or KernelSockets()
        self._runtime = RuntimeFile(runtime_file) if runtime_file is not None else None
        self._runtime_saved = RuntimeRecord()
        self._runtime_version = -1  # of what the runtime record holds; see _save_runtime
        self._transient: dict[RouteKey, Route] = {}  # the non-persistent routes
        self._transient_version = 0
        self._adopted: list[Table] = []  # adopted tables not settled yet
        self._kernel_dump: dict[Family, list[RawEntry]] = {}  # read once at start
        self._link_monitor_factory = link_monitor_factory
        self._interface_lister = interface_lister
        self._resolve_interface = interface_resolver or _if_nametoindex
        self._clock = clock
        self._busy_retry = busy_retry
        self.families: tuple[Family, ...] = ()
        self.state_error: str | None = None  # why the state file was set aside at start
        self.state_file_aside: Path | None = None
        self._persist_blocked: str | None = None
        self._routes: dict[RouteKey, Route] = {}
        self._tables: dict[TableId, Table] = {}
        self._ifindex: dict[str, int] = {}
        self._route_records: dict[RouteKey, str] = {}
        self._vif_records: dict[VifId, str] = {}
        self._listeners: list = []
        self._events: list[tuple[str, object]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: LinkMonitor | None = None
        self._tasks: list[asyncio.Task] = []
        self._last_busy_retry = 0.0

    # == life cycle ========================================================================
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._monitor = self._link_monitor_factory()  # subscribe before the dump
        except OSError as exc:
            log.error("cannot watch interfaces (rtnetlink): %s; hotplug is disabled", exc)
        self._ifindex = dict(self._interface_lister())
        if self._monitor is not None:
            self._loop.add_reader(self._monitor.fileno(), self._on_link_events)
        if self._runtime is not None:
            self._runtime_saved = self._runtime.load()
        adopted = list(getattr(self._kernel_factory, "adopted_tables", ()))
        if adopted:
            self._kernel_dump = _dump_kernel({family for family, _ in adopted})
        for family in Family:
            self._open(self._table(family, 0))
        for family, number in adopted:
            self._open(self._table(family, number))
        self._kernel_dump.clear()
        self._update_families()
        saved = self._load_at_start()
        self._restore(saved, self._runtime_saved.routes)
        self._settle_adopted()
        if self._state is not None and self._state.journal_entries and not self._persist_blocked:
            try:
                self._write_state()  # compact what the journal replayed into a snapshot
            except StateFileError as exc:
                log.error("%s", exc)
        self._tasks.append(self._loop.create_task(self._housekeeping()))

    async def stop(self, flush: bool = True) -> None:
        """Stop watching. With flush (the default) close the kernel sockets, which
        empties the kernel's tables; without, the sockets (and routes) stay open until
        the process exits."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self._loop is not None and self._monitor is not None:
            self._loop.remove_reader(self._monitor.fileno())
            self._monitor.close()
            self._monitor = None
        if self._state is not None and self._persist_blocked is None:
            try:
                self._write_state()  # compacts the journal into the snapshot
            except StateFileError as exc:
                log.error("%s", exc)
            self._state.close()
        if self._runtime is not None:
            if flush:
                self._runtime.remove()  # an explicit stop: nothing carries over
            else:
                self._save_runtime()
        for table in self._tables.values():
            if table.sock is not None:
                if self._loop is not None:
                    self._loop.remove_reader(table.sock.fileno())
                if flush:
                    table.sock.close()
                    table.sock = None
                    table.live.clear()
                    table.live_vifs.clear()
                    table.mfc.clear()
                    table.learned.clear()

    def add_listener(self, listener) -> None:
        self._listeners.append(listener)

    # == kernel tables ===================================================================
    def _table(self, family: Family, table: int) -> Table:
        found = self._tables.get((family, table))
        if found is None:
            found = self._tables[(family, table)] = Table(family, table)
        return found

    def _open(self, table: Table) -> bool:
        """Open the table's kernel socket if it is not open; False if the kernel refused."""
        if table.sock is not None:
            return True
        try:
            sock = self._kernel_factory(table.family, table.table)
        except (KernelBusy, FamilyUnavailable, MfcError) as exc:
            if table.error is None or str(table.error) != str(exc):
                log.warning("%s: %s", table.describe, exc)
            table.error = exc
            return False
        table.sock = sock
        table.error = None
        try:
            sock.set_assert(True)  # WRONGVIF upcalls, to move learned flows
        except MfcError as exc:
            log.warning("%s: no WRONGVIF upcalls: %s", table.describe, exc)
        if sock.adopted:
            self._adopt(table)
        if self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._on_upcalls, table)
        return True

    # == a kernel table that outlived the previous process =============================
    def _adopt(self, table: Table) -> None:
        recorded = self._runtime_saved.vifs.get((table.family, table.table), {})
        family, number = table.family, table.table
        entries = [
            e for e in self._kernel_dump.get(family, ()) if our_table_id(e[0], family) == number
        ]
        vifs, kept, removed = seed_installed(table, recorded, self._lookup_ifindex, entries)
        log.info("%s: adopted %d VIFs and %d MFC entries from the kernel (%d removed)",
                 table.describe, vifs, kept, removed)  # fmt: skip
        self._adopted.append(table)

    def _settle_adopted(self) -> None:
        """After the restore: adopted entries no configured route explains become the
        learned flows of the (*,G) routes that cover them, or go; VIFs nothing needs go."""
        for table in self._adopted:
            for sg, (parent, _) in list(table.mfc.items()):
                if sg in table.exact or sg in table.learned:
                    continue
                arrival = table.live_vifs[parent][0]
                template = table.templates.best(*sg, arrival)
                if template is None:
                    if table.mfc[sg][1]:  # not one of ours ("nobody routes this" entries are)
                        log.warning("%s: removing (%s, %s) from the adopted table: no route "
                                    "covers it (added by another tool?)",
                                    table.describe, *_addresses(sg))  # fmt: skip
                    table.set_entry(sg, None, NULL, False)
                    continue
                self._set_learned(table, sg, Learned(template, arrival, self._clock()), NULL)
                table.set_entry(sg, table.want(template.input, template.outputs), NULL, False)
            allocator = table.vifs
            for name in [name for name in allocator.slots if not allocator.needed(name)]:
                table.remove_vif(name, NULL)
                allocator.release(name, NULL)
        self._adopted.clear()
        self._emit_events()

    def _update_families(self) -> None:
        self.families = tuple(
            f for f in Family if (t := self._tables.get((f, 0))) is not None and t.sock
        )

    def _ready(self, table: Table) -> None:
        """Raise the table's error (KernelBusy, FamilyUnavailable) if it cannot be used."""
        if table.sock is None:
            if not self._open(table):
                assert table.error is not None
                raise table.error
            if table.table == 0:
                self._update_families()

    def _lookup_ifindex(self, name: str) -> int | None:
        index = self._ifindex.get(name)
        if index is None:
            # Created a moment ago and its link event is not read yet?
            index = self._resolve_interface(name)
            if index is not None:
                self._ifindex[name] = index
        return index

    # == the one path for changes ===================================================
    def _apply(
        self,
        routes: dict[RouteKey, Route | None],
        vifs: dict[VifId, VifConfig | None] | None = None,
        strict: bool = True,
    ) -> list[tuple[Route | None, Route | None]]:
        vifs = vifs or {}
        tids = {(key.family, key.table) for key in routes}
        tids.update((family, table) for family, table, _ in vifs)
        tables = {tid: self._table(*tid) for tid in tids}
        if strict:
            for table in tables.values():
                self._ready(table)
        else:
            for table in tables.values():
                self._open(table)
        journal = Journal() if strict else NULL
        self._events.clear()
        # A batch allocates many objects and no cycles (gcpause.py); one route, few.
        with gc_paused_if_many(len(routes)):
            try:
                changes = self._change_desired(routes, vifs, tables, journal)
                touched, exact, template_tables, retuned = changes[1:]
                for tid, names in touched.items():
                    tables[tid].vifs.check_limit(names)
                for tid, table in tables.items():
                    self._reconcile(
                        table,
                        touched.get(tid, {}),
                        exact.get(tid, ()),
                        tid in template_tables,
                        retuned.get(tid, set()),
                        journal,
                        strict,
                    )
                self._persist(changes[0], vifs, journal)
            except BaseException:
                journal.undo()
                self._events.clear()
                raise
            if self._runtime is not None:
                self._track_transient(changes[0])
            self._emit_events()
            self._emit_route_changes(changes[0])
        return changes[0]

    def _change_desired(self, routes, vifs, tables, journal):
        results: list[tuple[Route | None, Route | None]] = []
        touched: dict[TableId, dict[str, None]] = {}
        exact: dict[TableId, list[tuple[RouteKey, Route | None]]] = {}
        template_tables: set[TableId] = set()
        retuned: dict[TableId, set[str]] = {}
        # The change of each (input, outputs) combination's user count: routes share a
        # few, so counting them is cheaper than counting every interface name per route.
        delta: dict[TableId, dict[tuple[str, tuple[str, ...]], int]] = {}
        journal.push(self._undo_routes, results)  # filled below: one undo step
        all_routes = self._routes
        add_result = results.append
        family = number = table = counts = keys = None
        for key, new in routes.items():
            old = all_routes.get(key)
            if old is new or (old is not None and old == new):
                continue
            if key.family is not family or key.table != number:  # batches share a table
                family, number = key.family, key.table
                tid = (family, number)
                table = tables[tid]
                counts = delta.setdefault(tid, {})
                keys = exact.setdefault(tid, [])
            if old is not None:
                shape = (old.input, old.outputs)
                counts[shape] = counts.get(shape, 0) - 1
            if new is not None:
                shape = (new.input, new.outputs)
                counts[shape] = counts.get(shape, 0) + 1
                all_routes[key] = new
            else:
                del all_routes[key]
            add_result((old, new))
            if key.is_template:
                if new is not None:
                    table.templates.put(new)
                else:
                    table.templates.remove(key)
                template_tables.add(tid)
            else:
                if new is None:
                    del table.exact[key.sg]
                else:
                    table.exact[key.sg] = key
                keys.append((key, new))
        for tid, shapes in delta.items():
            counts: dict[str, int] = {}  # ordered: slots follow first use
            for (input, outputs), change in shapes.items():
                counts[input] = counts.get(input, 0) + change
                for name in outputs:
                    counts[name] = counts.get(name, 0) + change
            allocator = tables[tid].vifs
            for name, change in counts.items():
                if change:
                    allocator.add_users(name, change, journal)
            touched[tid] = dict.fromkeys(counts)
        for (family, number, name), config in vifs.items():
            tid = (family, number)
            table = tables[tid]
            old_threshold = table.vifs.threshold(name)
            table.vifs.set_explicit(name, config, journal)
            touched.setdefault(tid, {})[name] = None
            if table.vifs.threshold(name) != old_threshold:
                retuned.setdefault(tid, set()).add(name)
            self._events.append(("vif", (table, name)))
        return results, touched, exact, template_tables, retuned

    def _undo_routes(self, changes: list[tuple[Route | None, Route | None]]) -> None:
        for old, new in reversed(changes):
            key = (new if new is not None else old).key
            put_or_pop(self._routes, key, old)
            table = self._tables[(key.family, key.table)]
            if key.is_template:
                self._restore_template(table, key, old)
            else:
                put_or_pop(table.exact, key.sg, key if old is not None else None)

    @staticmethod
    def _restore_template(table: Table, key: RouteKey, old: Route | None) -> None:
        if old is None:
            table.templates.remove(key)
        else:
            table.templates.put(old)

    def _reconcile(
        self,
        table: Table,
        names: dict[str, None],
        exact_routes: Iterable[tuple[RouteKey, Route | None]],
        templates_changed: bool,
        retuned: set[str],
        journal: Journal,
        strict: bool,
    ) -> None:
        """Bring the kernel in line with the desired state after a change of `names`'
        users, of the exact routes `exact_routes` (key, now) and (maybe) of the templates."""
        allocator = table.vifs
        freed = [n for n in names if n in allocator.slots and not allocator.needed(n)]
        new = [n for n in names if n not in allocator.slots and allocator.needed(n)]
        # 1. New interfaces get a slot (not one being freed: its entries still point at
        #    it) and their VIF, before any entry refers to them.
        avoid = {allocator.slots[n] for n in freed}
        late = []
        for name in new:
            if allocator.allocate(name, avoid, journal) is None:
                late.append(name)
            else:
                self._install_vif(table, name, journal, strict)
                self._events.append(("vif", (table, name)))
        for name in retuned:  # a new TTL threshold: re-add the VIF
            if name in table.live and name in allocator.slots:
                table.remove_vif(name, journal)
                self._install_vif(table, name, journal, strict)
        # 2. Entries: changed exact routes in place (add replaces: no forwarding gap).
        if table.learned:  # a configured route may take over a learned flow
            for key, route in exact_routes:
                self._install_exact(table, key.sg, route, journal, strict)
        else:
            want = table.want
            table.set_entries(
                ((key.sg, want(r.input, r.outputs) if r is not None else None)
                 for key, r in exact_routes),
                journal,
                strict,
            )  # fmt: skip
        for name in retuned:
            self._sync_users_of(table, name, journal, strict)
        if templates_changed or retuned:
            self._rematch(table, journal, strict)
        # 3. Interfaces nothing uses any more lose their VIF and slot.
        for name in freed:
            for sg, learned in list(table.learned.items()):
                if learned.input == name:
                    self._drop_learned(table, sg, journal, strict)
                elif learned.arrival == name:
                    learned.arrival = learned.input
            slot = allocator.slots[name]
            table.remove_vif(name, journal)
            allocator.release(name, journal)
            self._events.append(("vif-", (table, name, slot)))
        # 4. At the 32-slot limit, new names reuse the slots freed just now.
        for name in late:
            allocator.allocate(name, set(), journal)
            self._install_vif(table, name, journal, strict)
            self._events.append(("vif", (table, name)))
            self._sync_users_of(table, name, journal, strict)

    def _install_vif(self, table: Table, name: str, journal: Journal, strict: bool) -> None:
        index = self._lookup_ifindex(name)
        if index is not None and table.sock is not None:
            table.install_vif(name, index, journal, strict)

    def _sync_exact(self, table: Table, key: RouteKey, journal: Journal, strict: bool) -> None:
        self._install_exact(table, key.sg, self._routes.get(key), journal, strict)

    def _install_exact(
        self, table: Table, sg: SG, route: Route | None, journal: Journal, strict: bool
    ) -> None:
        """Make the kernel entry `sg` match its configured exact route (None: removed)."""
        if route is None:
            table.set_entry(sg, None, journal, strict)
            return
        if table.learned and sg in table.learned:  # a configured route takes over
            self._drop_learned(table, sg, journal, strict, kernel=False)
        table.set_entry(sg, table.want(route.input, route.outputs), journal, strict)

    def _keys_using(self, table: Table, name: str) -> list[RouteKey]:
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

    def _sync_users_of(self, table: Table, name: str, journal: Journal, strict: bool) -> None:
        """Rewrite every entry (configured or learned) that involves interface `name`."""
        for key in self._keys_using(table, name):
            if not key.is_template:
                self._sync_exact(table, key, journal, strict)
        for sg, learned in list(table.learned.items()):
            if name == learned.input or name in learned.outputs:
                table.set_entry(sg, table.want(learned.input, learned.outputs), journal, strict)

    def _rematch(self, table: Table, journal: Journal, strict: bool) -> None:
        """Templates changed: give every learned flow its (new) template."""
        for sg, learned in list(table.learned.items()):
            best = table.templates.best(*sg, learned.arrival)
            if best is learned.template:
                continue
            if best is None and learned.template is not None:
                self._drop_learned(table, sg, journal, strict)
                continue
            self._set_learned(table, sg, Learned(best, learned.arrival, self._clock()), journal)
            table.set_entry(sg, table.want(best.input, best.outputs), journal, strict)

    def _set_learned(self, table: Table, sg: SG, learned: Learned, journal: Journal) -> None:
        old = table.learned.get(sg)
        table.learned[sg] = learned
        journal.push(put_or_pop, table.learned, sg, old)
        if learned.template is not None:
            self._events.append(("learned", (table, sg, learned)))
        elif old is not None and old.template is not None:
            self._events.append(("removed", self._learned_route(table, sg, old)))

    def _drop_learned(
        self, table: Table, sg: SG, journal: Journal, strict: bool, kernel: bool = True
    ) -> None:
        learned = table.learned.pop(sg)
        journal.push(put_or_pop, table.learned, sg, learned)
        if kernel:
            table.set_entry(sg, None, journal, strict)
        if learned.template is not None:
            self._events.append(("removed", self._learned_route(table, sg, learned)))

    # == persistence =====================================================================
    def _persist(self, changes, vifs, journal: Journal) -> None:
        if self._state is None:
            return
        records = self._route_records
        undo: list[tuple[RouteKey, str | None]] = []  # one undo step for the whole batch
        journal.push(self._restore_records, records, undo)
        lines: list[tuple[str | None, RouteKey]] = []  # (record, key); None: removed
        for old, new in changes:
            if new is not None and new.persistent and new.owner is None:
                key = new.key
                undo.append((key, records.get(key) if old is not None else None))
                record = records[key] = route_record(new)
                lines.append((record, key))
            elif old is not None and old.key in records:
                key = old.key
                undo.append((key, records.pop(key)))
                lines.append((None, key))
        vif_lines: list[str] = []
        for vid, config in vifs.items():
            old_record = self._vif_records.get(vid)
            if config is not None and config.persistent:
                self._vif_records[vid] = vif_record(config)
            else:
                self._vif_records.pop(vid, None)
            record = self._vif_records.get(vid)
            if record != old_record:
                journal.push(put_or_pop, self._vif_records, vid, old_record)
                vif_lines.append(
                    journal_vif(record) if record is not None else journal_unvif(*vid)
                )
        if (lines or vif_lines) and journal is not NULL:
            self._save(lines, vif_lines)

    def _save(self, lines: list[tuple[str | None, RouteKey]], vif_lines: list[str]) -> None:
        """Make a change durable: append it to the journal, or write a new snapshot when
        the journal would outgrow twice the snapshot (a big batch goes straight there)."""
        assert self._state is not None
        if self._persist_blocked is not None:
            raise StateFileError(self._persist_blocked)
        size = len(self._route_records) + len(self._vif_records)
        if self._state.journal_entries + len(lines) + len(vif_lines) > 2 * size + 64:
            self._write_state()
        else:
            entries = [
                journal_route(record) if record is not None else journal_unroute(key)
                for record, key in lines
            ]
            self._state.append(entries + vif_lines)

    @staticmethod
    def _restore_records(records: dict, undo: list[tuple[RouteKey, str | None]]) -> None:
        for key, record in reversed(undo):
            put_or_pop(records, key, record)

    def _write_state(self) -> None:
        if self._state is None:
            return
        if self._persist_blocked is not None:
            raise StateFileError(self._persist_blocked)
        self._state.write(
            render(list(self._route_records.values()), list(self._vif_records.values()))
        )

    def _load_at_start(self) -> SavedState:
        if self._state is None:
            return SavedState()
        try:
            return self._state.load()
        except StateFileError as exc:
            self.state_error = str(exc)
            try:
                self.state_file_aside = self._state.set_aside()
            except OSError as aside_exc:
                self._persist_blocked = (
                    f"{exc}; it could not be moved aside ({aside_exc.strerror}), so "
                    "persistent changes are refused until it is fixed or removed"
                )
                log.error("%s", self._persist_blocked)
            else:
                log.error(
                    "%s; it was moved to %s and the service starts with no routes",
                    exc,
                    self.state_file_aside,
                )
            return SavedState()

    def _restore(self, saved: SavedState, transient: Sequence[Route] = ()) -> None:
        routes: dict[RouteKey, Route | None] = {route.key: route for route in transient}
        routes.update((route.key, route) for route in saved.routes)
        vifs: dict[VifId, VifConfig | None] = {
            (c.family, c.table, c.interface): c for c in saved.vifs
        }
        self._apply(routes, vifs, strict=False)  # records the state file's entries too

    # == public mutations =================================================================
    def add_route(self, route: Route, *, counters: bool = True) -> RouteStatus:
        """counters=False skips the kernel counter read for the returned status (the
        service replies nothing, so it does not need them)."""
        check_route(route)
        self._apply({route.key: route})
        return self._status(route, counters)

    def add_routes(self, routes: Sequence[Route]) -> int:
        check_routes(routes)
        batch: dict[RouteKey, Route | None] = {route.key: route for route in routes}
        if len(batch) < len(routes):
            seen: set[RouteKey] = set()
            twice = next(r.key for r in routes if r.key in seen or seen.add(r.key))
            raise InvalidArgument(
                f"route {twice} appears twice in the batch; give each (S,G) once"
            )
        self._apply(batch)
        return len(batch)

    def remove_route(self, key: RouteKey) -> Route:
        route = self._routes.get(key)
        if route is None:
            raise NotFound(f"no route {key} is configured; ListRoutes shows the configured routes")
        self._apply({key: None})
        return route

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Route]:
        gone = [
            route
            for key, route in self._routes.items()
            if (family is None or key.family == family) and (table is None or key.table == table)
        ]
        self._apply({route.key: None for route in gone})
        return gone

    def lease_owners(self) -> set[str]:
        return {route.owner for route in self._routes.values() if route.owner}

    def remove_routes_owned_by(self, owner: str) -> list[Route]:
        gone = [route for route in self._routes.values() if route.owner == owner]
        if gone:
            self._apply({route.key: None for route in gone})
        return gone

    def add_vif(self, config: VifConfig) -> VifStatus:
        check_vif(config)
        self._apply({}, {(config.family, config.table, config.interface): config})
        return self._vif_status(self._table(config.family, config.table), config.interface)

    def remove_vif(self, interface: str, family: Family, table: int = 0) -> VifStatus:
        check_interface_name(interface)
        check_table(table)
        found = self._tables.get((family, table))
        if found is None or interface not in found.vifs.slots:
            raise NotFound(
                f"interface {interface!r} has no {family} VIF in table {table}; "
                "ListVifs shows the VIFs"
            )
        users = found.vifs.users.get(interface)
        if users:
            example = next(iter(self._keys_using(found, interface)))
            raise InvalidArgument(
                f"interface {interface!r} is still used by {users} route(s), such as "
                f"{example}; remove those routes first"
            )
        status = self._vif_status(found, interface)
        self._apply({}, {(family, table, interface): None})
        return status

    def reload(self) -> ReloadResult:
        if self._state is None:
            raise InvalidArgument("this engine has no state file to reload")
        saved = self._state.load()  # StateFileError: nothing changes
        wanted = {route.key: route for route in saved.routes}
        changes: dict[RouteKey, Route | None] = {}
        added = changed = unchanged = removed = 0
        for key, route in self._routes.items():
            if route.persistent and route.owner is None and key not in wanted:
                changes[key] = None
                removed += 1
        for key, route in wanted.items():
            current = self._routes.get(key)
            if current == route:
                unchanged += 1
                continue
            changes[key] = route
            if current is None:
                added += 1
            else:
                changed += 1
        vif_changes: dict[VifId, VifConfig | None] = {}
        wanted_vifs = {(c.family, c.table, c.interface): c for c in saved.vifs}
        for (family, number), table in self._tables.items():
            for name, config in table.vifs.explicit.items():
                if config.persistent and (family, number, name) not in wanted_vifs:
                    vif_changes[(family, number, name)] = None
        for vid, config in wanted_vifs.items():
            table = self._tables.get(vid[:2])
            if table is None or table.vifs.explicit.get(vid[2]) != config:
                vif_changes[vid] = config
        self._apply(changes, vif_changes)
        return ReloadResult(added, removed, changed, unchanged)

    # == reads =========================================================================
    @property
    def route_count(self) -> int:
        return len(self._routes) + sum(
            1
            for table in self._tables.values()
            for learned in table.learned.values()
            if learned.template is not None
        )

    @property
    def vif_count(self) -> int:
        return sum(len(table.vifs.slots) for table in self._tables.values())

    def get_route(self, key: RouteKey) -> RouteStatus:
        route = self._routes.get(key)
        if route is None:
            raise NotFound(f"no route {key} is configured")
        return self._status(route)

    def list_routes(
        self, family: Family | None = None, table: int | None = None
    ) -> list[RouteStatus]:
        out = [
            self._status(route)
            for key, route in self._routes.items()
            if (family is None or key.family == family) and (table is None or key.table == table)
        ]
        for (fam, number), found in self._tables.items():
            if (family is None or fam == family) and (table is None or number == table):
                for sg, learned in found.learned.items():
                    if learned.template is not None:
                        out.append(self._learned_status(found, sg, learned))
        return out

    def list_vifs(self, family: Family | None = None, table: int | None = None) -> list[VifStatus]:
        return [
            self._vif_status(found, name)
            for (fam, number), found in self._tables.items()
            if (family is None or fam == family) and (table is None or number == table)
            for name in sorted(found.vifs.slots, key=found.vifs.slots.__getitem__)
        ]

    def kernel_view(self, family: Family, table: int = 0) -> dict[tuple, tuple[int, dict]]:
        """What the engine has installed, as {(S, G): (input ifindex, {ifindex: ttl})}:
        tests compare it with the kernel's own read-back."""
        found = self._tables.get((family, table))
        return found.kernel_view() if found is not None else {}

    def _counters(self, table: Table, sg: SG) -> Counters:
        if table.sock is None or sg not in table.mfc:
            return Counters()
        try:
            c = table.sock.sg_counters(sg[0], sg[1])
        except MfcError:
            return Counters()
        return Counters(c.packets, c.bytes, c.wrong_if)

    def _status(self, route: Route, counters: bool = True) -> RouteStatus:
        """The route's state; with counters=False no kernel counter is read and the
        counters are zero."""
        key = route.key
        table = self._tables[(key.family, key.table)]
        missing = table.missing(route.input, route.outputs)
        state = "pending" if missing or table.sock is None else "installed"
        if not counters:
            return RouteStatus(route, state, _NO_COUNTERS, missing)
        if not key.is_template:
            counters = self._counters(table, key.sg)
        else:
            packets = octets = wrong = 0
            for sg, learned in table.learned.items():
                if learned.template is not None and learned.template.key == key:
                    c = self._counters(table, sg)
                    packets += c.packets
                    octets += c.bytes
                    wrong += c.wrong_if
            counters = Counters(packets, octets, wrong)
        return RouteStatus(route, state, counters, missing)

    def _learned_route(self, table: Table, sg: SG, learned: Learned) -> Route:
        route = learned.route
        if route is None or route.input != learned.input or route.outputs != learned.outputs:
            prefix = _HOST_PREFIX[table.family]
            key = RouteKey(table.table, sg, prefix, prefix)
            route = learned.route = Route(key, learned.input, learned.outputs, persistent=False)
        return route

    def _learned_status(self, table: Table, sg: SG, learned: Learned) -> RouteStatus:
        route = self._learned_route(table, sg, learned)
        missing = table.missing(route.input, route.outputs)
        return RouteStatus(route, "learned", self._counters(table, sg), missing)

    def _vif_status(self, table: Table, name: str) -> VifStatus:
        slot = table.live.get(name)
        config = table.vifs.explicit.get(name)
        counters = None
        if slot is not None and table.sock is not None:
            try:
                counters = table.sock.vif_counters(slot)
            except MfcError:
                counters = None
        return VifStatus(
            interface=name,
            family=table.family,
            table=table.table,
            index=slot,
            ttl_threshold=table.vifs.threshold(name),
            explicit=config is not None,
            in_packets=counters.in_packets if counters else 0,
            out_packets=counters.out_packets if counters else 0,
            in_bytes=counters.in_bytes if counters else 0,
            out_bytes=counters.out_bytes if counters else 0,
        )

    # == listeners =======================================================================
    def _track_transient(self, changes: list[tuple[Route | None, Route | None]]) -> None:
        transient = self._transient
        for old, new in changes:
            if old is not None and not old.persistent:
                transient.pop(old.key, None)
                self._transient_version += 1
            if new is not None and not new.persistent:
                transient[new.key] = new
                self._transient_version += 1

    def _save_runtime(self) -> None:
        """Rewrite the runtime record if the non-persistent routes or a live VIF changed."""
        if self._runtime is None:
            return
        version = self._transient_version + sum(t.live_version for t in self._tables.values())
        if version == self._runtime_version:
            return
        self._runtime_version = version
        vifs = {
            (table.family, table.table): dict(table.live_vifs)
            for table in self._tables.values()
            if table.live_vifs
        }
        self._runtime.write(render_runtime(list(self._transient.values()), vifs))

    def _emit_events(self) -> None:
        self._save_runtime()
        events, self._events = self._events, []
        if not self._listeners:
            return
        for kind, payload in events:
            try:
                if kind == "vif":
                    table, name = payload
                    if name in table.vifs.slots:
                        status = self._vif_status(table, name)
                        self._notify("vif_added", status)
                elif kind == "vif-":
                    table, name, slot = payload
                    status = VifStatus(name, table.family, table.table, slot, 1, False)
                    self._notify("vif_removed", status)
                elif kind == "learned":
                    table, sg, learned = payload
                    if table.learned.get(sg) is learned:
                        self._notify("route_added", self._learned_route(table, sg, learned))
                elif kind == "removed":
                    self._notify("route_removed", payload)
                elif kind == "route":
                    self._notify("route_added", payload)
            except Exception:
                log.exception("cannot report %s", kind)

    def _notify(self, method: str, value: object) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, method)(value)
            except Exception:
                log.exception("listener %r failed in %s", listener, method)

    def _emit_route_changes(self, changes) -> None:
        for listener in list(self._listeners):
            added, removed = listener.route_added, listener.route_removed
            for old, new in changes:
                try:
                    if new is not None:
                        added(new)
                    elif old is not None:
                        removed(old)
                except Exception:
                    log.exception("listener %r failed on a route change", listener)

    # == asyncio: upcalls, link events, expiry =============================================
    def _on_upcalls(self, table: Table) -> None:
        sock = table.sock
        if sock is None:
            return
        try:
            upcalls = sock.read_upcalls()
        except OSError as exc:
            log.error("%s: cannot read upcalls: %s", table.describe, exc)
            return
        for upcall in upcalls:
            try:
                self._handle_upcall(table, upcall)
            except Exception:
                log.exception("%s: upcall %s failed", table.describe, upcall)
        self._emit_events()

    def _handle_upcall(self, table: Table, upcall: Upcall) -> None:
        slot_owner = table.live_vifs.get(upcall.vif)
        if slot_owner is None:
            return
        arrival = slot_owner[0]
        sg = (upcall.source, upcall.group)
        if upcall.kind == UpcallKind.NOCACHE:
            key = table.exact.get(sg)
            if key is not None:  # configured: (re)install exactly that
                self._sync_exact(table, key, NULL, False)
                return
            template = table.templates.best(upcall.source, upcall.group, arrival)
            learned = Learned(template, arrival, self._clock())
            self._set_learned(table, sg, learned, NULL)
            # Install at once: the kernel then forwards the packets it queued.
            table.set_entry(sg, table.want(learned.input, learned.outputs), NULL, False, True)
        elif upcall.kind == UpcallKind.WRONGVIF:
            learned = table.learned.get(sg)
            if learned is None or learned.input == arrival:
                return
            template = table.templates.accepting(upcall.source, upcall.group, arrival)
            if template is None:
                return
            log.info(
                "%s: flow (%s, %s) moved from %s to %s (template %s)",
                table.describe, *_addresses(sg), learned.input, arrival, template.key,
            )  # fmt: skip
            self._set_learned(table, sg, Learned(template, arrival, self._clock()), NULL)
            table.set_entry(sg, table.want(template.input, template.outputs), NULL, False)

    def _on_link_events(self) -> None:
        assert self._monitor is not None
        try:
            events = self._monitor.read_events()
        except OSError as exc:  # ENOBUFS: events were lost; take a fresh list
            log.warning("link events lost (%s): re-reading the interface list", exc)
            self._resync_links()
            return
        for event in events:
            try:
                self._handle_link(event)
            except Exception:
                log.exception("link event %s failed", event)
        self._emit_events()

    def _resync_links(self) -> None:
        now = dict(self._interface_lister())
        for name, index in list(self._ifindex.items()):
            if now.get(name) != index:
                self._handle_link(LinkEvent("del", name, index))
        for name, index in now.items():
            self._handle_link(LinkEvent("new", name, index))
        self._emit_events()

    def _handle_link(self, event: LinkEvent) -> None:
        name, index = event.name, event.index
        if event.kind == "new":
            if self._ifindex.get(name) == index and all(
                name in t.live or name not in t.vifs.slots or t.sock is None
                for t in self._tables.values()
            ):
                return  # the same interface (a state change) with its VIFs in place
            # Renamed: the index was known under another name, which is gone.
            for other, other_index in list(self._ifindex.items()):
                if other_index == index and other != name:
                    self._handle_link(LinkEvent("del", other, index))
            self._ifindex[name] = index
        else:
            if self._ifindex.get(name) != index:
                return
            del self._ifindex[name]
        for table in self._tables.values():
            if name not in table.vifs.slots or table.sock is None:
                continue
            if event.kind == "new":
                live = table.live_vifs.get(table.live.get(name, -1))
                if live is not None and live[1] == index:
                    continue
                table.forget_vif(name)
                table.install_vif(name, index, NULL, False)
            else:
                table.forget_vif(name)
            self._events.append(("vif", (table, name)))
            self._sync_users_of(table, name, NULL, False)
            for key in self._keys_using(table, name):
                self._events.append(("route", self._routes[key]))
            log.info("%s: interface %s %s (index %d)", table.describe, name,
                     "appeared" if event.kind == "new" else "disappeared", index)  # fmt: skip

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval)
            try:
                self.expire_learned()
                self._retry_busy()
            except Exception:
                log.exception("housekeeping failed")

    def expire_learned(self) -> int:
        """Drop learned flows that forwarded nothing for learned_expiry seconds.

        Activity is packets - wrong_if: the kernel counts a packet arriving on a wrong
        interface in both, and such packets alone must not keep a flow alive."""
        now = self._clock()
        expired = 0
        for table in self._tables.values():
            if not table.learned:
                continue
            for sg, learned in list(table.learned.items()):
                if table.sock is not None and sg in table.mfc:
                    try:
                        counters = table.sock.sg_counters(sg[0], sg[1])
                        packets = counters.packets - counters.wrong_if
                    except MfcError:
                        packets = learned.last_packets
                    if packets != learned.last_packets:
                        learned.last_packets = packets
                        learned.last_change = now
                        continue
                if now - learned.last_change >= self.learned_expiry:
                    self._drop_learned(table, sg, NULL, False)
                    expired += 1
        self._emit_events()
        return expired

    def _retry_busy(self) -> None:
        now = self._clock()
        if now - self._last_busy_retry < self._busy_retry:
            return
        self._last_busy_retry = now
        for table in list(self._tables.values()):
            if table.sock is None and isinstance(table.error, KernelBusy):
                if self._open(table):
                    log.info("%s: the kernel table is free now; installing", table.describe)
                    self._install_table(table)
        self._update_families()

    def _install_table(self, table: Table) -> None:
        """A table's socket just opened: install all its VIFs and routes."""
        for name in table.vifs.slots:
            self._install_vif(table, name, NULL, False)
        for key in list(table.exact.values()):
            self._sync_exact(table, key, NULL, False)
        self._emit_events()
