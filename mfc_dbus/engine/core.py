"""The engine: desired routes and VIFs, reconciled into the kernel's tables.

Desired state: the configured routes (by key) and, per table, the VIF slots and
explicit VIF settings (vifs.py) and the templates (templates.py). Installed state: per
table, the live VIFs and MFC entries (table.py), changed only together with the
kernel. Every public mutation goes through `_apply`, the change transaction: it
changes the desired state (desired.py), reconciles the kernel (reconcile.py), writes
the state file (persist.py) and only then tells the listeners (events.py); any
failure undoes everything (undo.py). Upcalls, link events and expiry make
best-effort changes (change.py) through the same parts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from ..errors import InvalidArgument, NotFound
from ..gcpause import gc_paused_if_many
from ..model import Family, Route, RouteKey, RouteStatus, VifConfig, VifStatus
from . import configured, groupcalls, identity
from .adopt import Adoption
from .api import EngineListener, ReloadResult
from .change import Change, VifId
from .desired import change_desired
from .events import Listeners
from .joins import Join, JoinKey, JoinManager, JoinStatus, follow_interface
from .learned import Flows
from .links import Hotplug, Interfaces
from .listing import RoutePage, list_page
from .mrdisc import Mrdisc
from .outputs import with_outputs, without_outputs
from .persist import Persistence
from .port import KernelPort, LinkWatcher, LinuxKernel
from .reconcile import Reconciler
from .runtime import RuntimeRecord, RuntimeState
from .state import SavedState
from .status import route_status, vif_status
from .table import Table
from .tables import KernelTables
from .validate import check_interface_name, check_route, check_table, check_vif

log = logging.getLogger(__name__)


def _repeated(routes: Sequence[Route]) -> RouteKey | None:
    """The first key that appears twice."""
    seen: set[RouteKey] = set()
    for route in routes:
        if route.key in seen:
            return route.key
        seen.add(route.key)
    return None


class Engine:
    """Implements mfc_dbus.engine.EngineAPI."""

    def __init__(
        self,
        state_file: Path | None,
        *,
        kernel: KernelPort | None = None,
        runtime_file: Path | None = None,
        learned_expiry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        expiry_interval: float | None = None,
        busy_retry: float = 5.0,
        config_file: Path | None = None,
    ) -> None:
        self._config = configured.ConfigFiles(config_file) if config_file else None
        self._kernel: KernelPort = kernel if kernel is not None else LinuxKernel()
        self._clock = clock
        self._expiry_interval = expiry_interval or max(0.05, min(learned_expiry / 4, 5.0))
        self._busy_retry = busy_retry
        self._last_busy_retry = 0.0
        self._routes: dict[RouteKey, Route] = {}  # the configured routes
        self._tables = KernelTables(self._kernel)
        self._tables.on_open = self._opened
        self._interfaces = Interfaces(self._kernel)
        self._flows = Flows(clock, learned_expiry)
        self._reconciler = Reconciler(self._routes, self._flows, self._interfaces.lookup)
        self._hotplug = Hotplug(self._interfaces, self._tables, self._reconciler, self._routes)
        self._adoption = Adoption(self._kernel, self._interfaces.lookup)
        self._state = Persistence(state_file)
        self._memberships = self._kernel.memberships()
        self._runtime = RuntimeState(runtime_file, self._memberships)
        self._listeners = Listeners()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link_watcher: LinkWatcher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.joins = JoinManager(self._memberships)  # group joins (IGMP/MLD)
        groupcalls.observe(self.joins, self._state, self._listeners)
        self.mrdisc = Mrdisc(clock)  # router discovery follows the VIFs it is on for
        self._listeners.add(self.mrdisc)

    @property
    def families(self) -> tuple[Family, ...]:
        """The families whose kernel socket opened (table 0)."""
        return self._tables.families

    @property
    def state_error(self) -> str | None:
        """Why the state file was set aside at start."""
        return self._state.error

    @property
    def state_file_aside(self) -> Path | None:
        return self._state.aside

    # == life cycle ========================================================================
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.mrdisc.start(self._loop)
        self._watch_links()
        self._runtime.load()
        self._adoption.expect(self._runtime.previous.vifs)
        self._memberships.adopt(self._runtime.previous.join_sockets)
        adopted = self._kernel.adopted_tables()
        for family, number in [(family, 0) for family in Family] + adopted:
            self._tables.open(self._tables.get(family, number))
        self._tables.update_families()
        self._load()
        if self._adoption.pending:  # adopt.py: the kernel's entries, checked after start
            self._tasks.append(
                self._loop.create_task(self._adoption.verify(self._flows, self._publish))
            )
        self._tasks.append(self._loop.create_task(self._housekeeping()))

    def _load(self) -> None:
        """The state file, the runtime record and the configuration files, onto the
        tables just opened (adopted ones believe their entries: adopt.py)."""
        try:
            self._restore(self._state.load_at_start(), self._runtime.previous)
            self._state.restored()
            for name, index in self._interfaces.ifindex.items():
                self.joins.interface_appeared(name, index)
            if self._config is not None:
                found = self._config.plan_at_start(
                    self._routes, self._tables, self._interfaces.ifindex, self.joins.joins()
                )
                if found is not None:
                    self._apply(found.routes, found.vifs, Change.best_effort())
                    configured.apply_joins(self.joins, found.joins)
        finally:
            self._adoption.restored()
        left = self._memberships.settle_adopted()
        if left:
            log.info("left %d group memberships the previous process held and no join "
                     "wants now", len(left))  # fmt: skip
        self._record_joins()

    @property
    def verifying(self) -> bool:
        """An adopted kernel table is still being compared with the restored state."""
        return self._adoption.pending

    async def verified(self) -> None:
        """Returns once every adopted table is verified (at once if none was adopted)."""
        await self._adoption.done.wait()

    def _watch_links(self) -> None:
        assert self._loop is not None
        try:
            self._link_watcher = self._kernel.watch_links()  # subscribe before the list is read
        except OSError as exc:
            log.error("cannot watch interfaces (rtnetlink): %s; hotplug is disabled", exc)
        self._interfaces.read()
        if self._link_watcher is not None:
            self._loop.add_reader(self._link_watcher.fileno(), self._on_link_events)

    def _restore(self, saved: SavedState, transient: RuntimeRecord) -> None:
        """The state file's routes, VIFs and joins, and the previous process's
        non-persistent ones."""
        routes: dict[RouteKey, Route | None] = {route.key: route for route in transient.routes}
        routes.update((route.key, route) for route in saved.routes)
        vifs: dict[VifId, VifConfig | None] = {
            (c.family, c.table, c.interface): c for c in saved.vifs
        }
        self._apply(routes, vifs, Change.best_effort())  # records the state file's entries
        groupcalls.restore(self.joins, [*saved.joins, *transient.joins])

    async def stop(self, flush: bool = True) -> None:
        """Stop watching and save the state file. With flush (the default) close the
        kernel sockets, which empties the kernel's tables; without, the sockets (and
        routes) stay open until the process exits."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._stop_watching()
        self.mrdisc.stop(terminate=flush)  # a restart keeping the routes stays a router
        self._state.close()
        if flush:
            self._runtime.remove()
            self._tables.close()
            self.joins.close()
        else:
            self._record_joins()

    def _stop_watching(self) -> None:
        if self._loop is None:
            return
        if self._link_watcher is not None:
            self._loop.remove_reader(self._link_watcher.fileno())
            self._link_watcher.close()
            self._link_watcher = None
        for table in self._tables:
            if table.sock is not None:
                self._loop.remove_reader(table.sock.fileno())

    def add_listener(self, listener: EngineListener) -> None:
        self._listeners.add(listener)

    def _opened(self, table: Table) -> None:
        assert table.sock is not None
        if table.sock.adopted:
            self._adoption.seed(table)
        if self._loop is not None:
            self._loop.add_reader(table.sock.fileno(), self._on_upcalls, table)

    # == the change transaction =========================================================
    def _apply(
        self,
        routes: dict[RouteKey, Route | None],
        vifs: dict[VifId, VifConfig | None],
        change: Change,
    ) -> None:
        tables = self._tables.prepare(routes, vifs, change.strict)
        # A batch allocates many objects and no cycles (gcpause.py); one route, few.
        with gc_paused_if_many(len(routes)):
            try:
                desired = change_desired(self._routes, routes, vifs, tables, change)
                for tid, wanted in desired.tables.items():
                    tables[tid].vifs.check_limit(wanted.names)
                for tid, wanted in desired.tables.items():
                    self._reconciler.reconcile(tables[tid], wanted, change)
                self._state.record(desired.routes, vifs, change)
            except BaseException:
                change.roll_back()
                raise
            self._runtime.track(desired.routes)
            self._publish(change)
            self._listeners.routes_changed(desired.routes)

    def _record_joins(self) -> None:
        """Joins were made or left: the runtime record keeps the non-persistent ones and
        what the join sockets hold."""
        self._runtime.track_joins(self.joins.joins())
        self._runtime.save(self._tables)

    def _publish(self, change: Change) -> None:
        """A change is made: record it for the next process, tell the listeners."""
        self._runtime.save(self._tables)
        self._listeners.deliver(change.events)

    # == public mutations =================================================================
    def add_route(
        self, route: Route, *, counters: bool = True, replace: bool = False
    ) -> RouteStatus:
        """counters=False skips the kernel counter read for the returned status (the
        service replies nothing, so it does not need them). replace: an exact (S,G)
        may move to another input."""
        check_route(route)
        current = self._routes.get(route.key)
        configured.refuse_replacing(current)
        identity.refuse_other_input(current, route, replace)
        self._apply({route.key: route}, {}, Change.call())
        return route_status(self._tables.of(route.key), route, counters)

    def add_routes(self, routes: Sequence[Route], *, replace: Collection[RouteKey] = ()) -> int:
        """replace: the keys of exact (S,G) that may move to another input."""
        batch: dict[RouteKey, Route | None] = {}
        current_routes = self._routes
        for route in routes:
            check_route(route)
            key = route.key
            current = current_routes.get(key)
            if current is not None:
                configured.refuse_replacing(current)
                identity.refuse_other_input(current, route, key in replace)
            batch[key] = route
        if len(batch) < len(routes):
            raise InvalidArgument(
                f"route {_repeated(routes)} appears twice in the batch; give each (S,G) "
                "once (and each (*,G) or prefix route once per input)"
            )
        self._apply(batch, {}, Change.call())
        return len(batch)

    def remove_route(self, key: RouteKey, input: str = "") -> Route:
        """input: which template of the key ("": the only one; an exact (S,G)'s input
        if given must be its own)."""
        route = self._configured_route(key, input)
        configured.refuse_removing(route)
        self._apply({route.key: None}, {}, Change.call())
        return route

    def add_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        return self._change_outputs(with_outputs(self._configured_route(key, input), outputs))

    def remove_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        return self._change_outputs(without_outputs(self._configured_route(key, input), outputs))

    def _configured_route(self, key: RouteKey, input: str) -> Route:
        table = self._tables.find(key.family, key.table)
        templates = table.templates if table is not None else None
        return identity.configured_route(self._routes, templates, key, input or key.input)

    def _change_outputs(self, route: Route) -> Route:
        configured.refuse_replacing(route)
        if self._routes.get(route.key) is not route:  # else: a no-op, nothing changes
            self._apply({route.key: route}, {}, Change.call())
        return route

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Route]:
        gone = [
            route
            for key, route in self._routes.items()
            if (family is None or key.family == family)
            and (table is None or key.table == table)
            and not route.origin  # a configuration file's routes stay
        ]
        self._apply({route.key: None for route in gone}, {}, Change.call())
        return gone

    def lease_owners(self) -> set[str]:
        owners = {route.owner for route in self._routes.values() if route.owner}
        return owners | groupcalls.lease_owners(self.joins)

    def remove_routes_owned_by(self, owner: str) -> list[Route]:
        """Also leaves the groups `owner` joined with a lease."""
        self.joins.remove_owned_by(owner)
        gone = [route for route in self._routes.values() if route.owner == owner]
        if gone:
            self._apply({route.key: None for route in gone}, {}, Change.call())
        self._record_joins()
        return gone

    def add_vif(self, config: VifConfig) -> VifStatus:
        check_vif(config)
        existing = self._tables.find(config.family, config.table)
        if existing is not None:
            configured.refuse_vif_change(existing.vifs.explicit.get(config.interface))
        vid = (config.family, config.table, config.interface)
        self._apply({}, {vid: config}, Change.call())
        return vif_status(self._tables.get(config.family, config.table), config.interface)

    def remove_vif(self, interface: str, family: Family, table: int = 0) -> VifStatus:
        check_interface_name(interface)
        check_table(table)
        found = self._tables.find(family, table)
        if found is None or interface not in found.vifs.slots:
            raise NotFound(
                f"interface {interface!r} has no {family} VIF in table {table}; "
                "ListVifs shows the VIFs"
            )
        users = found.vifs.users.get(interface)
        if users:
            example = next(iter(self._reconciler.keys_using(found, interface)))
            raise InvalidArgument(
                f"interface {interface!r} is still used by {users} route(s), such as "
                f"{example}; remove those routes first"
            )
        configured.refuse_vif_change(found.vifs.explicit.get(interface))
        status = vif_status(found, interface)
        self._apply({}, {(family, table, interface): None}, Change.call())
        return status

    def join_group(self, join: Join) -> JoinStatus:
        try:
            return groupcalls.join_group(self.joins, join)
        finally:
            self._record_joins()  # what the join sockets hold

    def leave_group(self, key: JoinKey) -> Join:
        try:
            return groupcalls.leave_group(self.joins, key)
        finally:
            self._record_joins()

    def reload(self) -> ReloadResult:
        """The state file and the configuration files again: both are read (and a
        problem in either raised) before anything changes."""
        routes, vifs, result = self._state.reload(self._routes, self._tables)
        found = None
        if self._config is not None:
            found = self._config.plan(
                self._routes, self._tables, self._interfaces.ifindex, self.joins.joins()
            )
            routes.update(found.routes)
            vifs.update(found.vifs)
            result = found.summed(result)
        self._apply(routes, vifs, Change.call())
        if found is not None:
            configured.apply_joins(self.joins, found.joins)
        groupcalls.apply_saved(self.joins, self._state.reloaded_joins)
        self._record_joins()
        return result

    # == reads =========================================================================
    @property
    def route_count(self) -> int:
        return len(self._routes) + sum(
            1
            for table in self._tables
            for learned in table.learned.values()
            if learned.template is not None
        )

    @property
    def vif_count(self) -> int:
        return sum(len(table.vifs.slots) for table in self._tables)

    def list_routes(
        self, family: Family | None = None, table: int | None = None
    ) -> list[RouteStatus]:
        return self.list_page(family, table).statuses

    def list_page(
        self,
        family: Family | None = None,
        table: int | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> RoutePage:
        return list_page(self._routes, self._tables, family, table, after, limit)

    def list_groups(
        self, family: Family | None = None, table: int | None = None
    ) -> list[JoinStatus]:
        return groupcalls.list_groups(self.joins, family, table)

    @property
    def group_count(self) -> int:
        return len(self.joins.joins())

    def list_vifs(self, family: Family | None = None, table: int | None = None) -> list[VifStatus]:
        return [
            vif_status(found, name)
            for found in self._tables.matching(family, table)
            for name in sorted(found.vifs.slots, key=found.vifs.slots.__getitem__)
        ]

    def kernel_view(
        self, family: Family, table: int = 0
    ) -> dict[tuple[bytes, bytes], tuple[int, dict[int, int]]]:
        """What the engine has installed, as {(S, G): (input ifindex, {ifindex: ttl})}:
        tests compare it with the kernel's own read-back."""
        found = self._tables.find(family, table)
        return found.kernel_view() if found is not None else {}

    # == asyncio: upcalls, link events, housekeeping ======================================
    def _on_upcalls(self, table: Table) -> None:
        sock = table.sock
        if sock is None:
            return
        try:
            upcalls = sock.read_upcalls()
        except OSError as exc:
            log.error("%s: cannot read upcalls: %s", table.describe, exc)
            return
        change = Change.best_effort()
        for upcall in upcalls:
            try:
                self._reconciler.on_upcall(table, upcall, change)
            except Exception:
                log.exception("%s: upcall %s failed", table.describe, upcall)
        self._publish(change)

    def _on_link_events(self) -> None:
        assert self._link_watcher is not None
        change = Change.best_effort()
        try:
            events = self._link_watcher.read_events()
        except OSError as exc:  # ENOBUFS: events were lost; take a fresh list
            log.warning("link events lost (%s): re-reading the interface list", exc)
            self._hotplug.resync(change)
            events = []
        for event in events:
            try:
                self._hotplug.handle(event, change)
                follow_interface(self.joins, event)
            except Exception:
                log.exception("link event %s failed", event)
        self._publish(change)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval)
            try:
                self.expire_learned()
                self._retry_busy()
            except Exception:
                log.exception("housekeeping failed")

    def flush_learned(self, family: Family | None = None, table: int | None = None) -> int:
        change = Change.best_effort()  # a flow that cannot be removed is logged, kept
        dropped = self._flows.drop_all(self._tables.matching(family, table), change)
        self._publish(change)
        return dropped

    def expire_learned(self) -> int:
        """Drop learned flows that forwarded nothing for learned_expiry seconds."""
        change = Change.best_effort()
        expired = self._flows.expire(self._tables, change)
        self._publish(change)
        return expired

    def _retry_busy(self) -> None:
        now = self._clock()
        if now - self._last_busy_retry < self._busy_retry:
            return
        self._last_busy_retry = now
        for table in self._tables.reopen_busy():
            log.info("%s: the kernel table is free now; installing", table.describe)
            change = Change.best_effort()
            self._reconciler.install_table(table, change)
            self._publish(change)
