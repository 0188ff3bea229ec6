"""The engine: desired routes and VIFs, reconciled into the kernel's tables.

Desired state: the configured routes (by key) and, per table, the VIF slots and
explicit VIF settings (vifs.py) and the templates (templates.py). Installed state: per
table, the live VIFs and MFC entries (table.py), changed only together with the
kernel. Every public mutation goes through the change transaction (transaction.py);
the state file, the previous process's record and the configuration files are read
through sources.py; upcalls, link events and expiry make best-effort changes
(change.py) in watchers.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from ..errors import InvalidArgument, NotFound
from ..model import Family, Route, RouteKey, RouteStatus, VifConfig, VifStatus
from . import configured, groupcalls, identity
from .adopt import Adoption
from .api import EngineListener, ReloadResult
from .change import Change
from .events import Listeners
from .joins import Join, JoinKey, JoinManager, JoinStatus
from .learned import Flows
from .links import Hotplug, Interfaces
from .listing import RoutePage, list_page
from .mrdisc import Mrdisc
from .outputs import with_outputs, without_outputs
from .persist import Persistence
from .port import KernelPort, LinuxKernel
from .reconcile import Reconciler
from .runtime import RuntimeState
from .sources import StateSources
from .status import route_status, vif_status
from .table import Table
from .tables import KernelTables
from .transaction import Transaction
from .validate import check_interface_name, check_route, check_table, check_vif
from .watchers import Watchers

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
        self._kernel: KernelPort = kernel if kernel is not None else LinuxKernel()
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
        self._tasks: list[asyncio.Task[None]] = []
        self.joins = JoinManager(self._memberships)  # group joins (IGMP/MLD)
        groupcalls.observe(self.joins, self._state, self._listeners)
        self._transaction = Transaction(
            self._routes,
            self._tables,
            self._reconciler,
            self._state,
            self._runtime,
            self._listeners,
            self.joins,
        )
        self._sources = StateSources(
            self._state,
            configured.ConfigFiles(config_file) if config_file else None,
            self._routes,
            self._tables,
            self._interfaces,
            self.joins,
            self._transaction,
        )
        self._watchers = Watchers(
            self._kernel,
            self._tables,
            self._interfaces,
            self._hotplug,
            self._reconciler,
            self._flows,
            self.joins,
            self._transaction,
            clock=clock,
            expiry_interval=expiry_interval or max(0.05, min(learned_expiry / 4, 5.0)),
            busy_retry=busy_retry,
        )
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
        loop = asyncio.get_running_loop()
        self.mrdisc.start(loop)
        self._watchers.watch_links(loop)
        self._runtime.load()
        self._adoption.expect(self._runtime.previous.vifs)
        self._memberships.adopt(self._runtime.previous.join_sockets)
        adopted = self._kernel.adopted_tables()
        for family, number in [(family, 0) for family in Family] + adopted:
            self._tables.open(self._tables.get(family, number))
        self._tables.update_families()
        self._load()
        if self._adoption.pending:  # adopt.py: the kernel's entries, checked after start
            verify = self._adoption.verify(self._flows, self._transaction.publish)
            self._tasks.append(loop.create_task(verify))
        self._tasks.append(loop.create_task(self._watchers.housekeeping()))

    def _load(self) -> None:
        """The state file, the runtime record and the configuration files, onto the
        tables just opened (adopted ones believe their entries: adopt.py)."""
        try:
            self._sources.load_at_start(self._runtime.previous)
        finally:
            self._adoption.restored()
        left = self._memberships.settle_adopted()
        if left:
            log.info("left %d group memberships the previous process held and no join "
                     "wants now", len(left))  # fmt: skip
        self._transaction.record_joins()

    @property
    def verifying(self) -> bool:
        """An adopted kernel table is still being compared with the restored state."""
        return self._adoption.pending

    async def verified(self) -> None:
        """Returns once every adopted table is verified (at once if none was adopted)."""
        await self._adoption.done.wait()

    async def stop(self, flush: bool = True) -> None:
        """Stop watching and save the state file. With flush (the default) close the
        kernel sockets, which empties the kernel's tables; without, the sockets (and
        routes) stay open until the process exits."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._watchers.stop()
        self.mrdisc.stop(terminate=flush)  # a restart keeping the routes stays a router
        self._state.close()
        if flush:
            self._runtime.remove()
            self._tables.close()
            self.joins.close()
        else:
            self._transaction.record_joins()

    def add_listener(self, listener: EngineListener) -> None:
        self._listeners.add(listener)

    def _opened(self, table: Table) -> None:
        assert table.sock is not None
        if table.sock.adopted:
            self._adoption.seed(table)
        self._watchers.watch_table(table)

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
        self._transaction.apply({route.key: route}, {}, Change.call())
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
        self._transaction.apply(batch, {}, Change.call())
        return len(batch)

    def remove_route(self, key: RouteKey, input: str = "") -> Route:
        """input: which template of the key ("": the only one; an exact (S,G)'s input
        if given must be its own)."""
        route = self._configured_route(key, input)
        configured.refuse_removing(route)
        self._transaction.apply({route.key: None}, {}, Change.call())
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
            self._transaction.apply({route.key: route}, {}, Change.call())
        return route

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Route]:
        gone = [
            route
            for key, route in self._routes.items()
            if (family is None or key.family == family)
            and (table is None or key.table == table)
            and not route.origin  # a configuration file's routes stay
        ]
        self._transaction.apply({route.key: None for route in gone}, {}, Change.call())
        return gone

    def lease_owners(self) -> set[str]:
        owners = {route.owner for route in self._routes.values() if route.owner}
        return owners | groupcalls.lease_owners(self.joins)

    def remove_routes_owned_by(self, owner: str) -> list[Route]:
        """Also leaves the groups `owner` joined with a lease."""
        self.joins.remove_owned_by(owner)
        gone = [route for route in self._routes.values() if route.owner == owner]
        if gone:
            self._transaction.apply({route.key: None for route in gone}, {}, Change.call())
        self._transaction.record_joins()
        return gone

    def add_vif(self, config: VifConfig) -> VifStatus:
        check_vif(config)
        existing = self._tables.find(config.family, config.table)
        if existing is not None:
            configured.refuse_vif_change(existing.vifs.explicit.get(config.interface))
        vid = (config.family, config.table, config.interface)
        self._transaction.apply({}, {vid: config}, Change.call())
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
        self._transaction.apply({}, {(family, table, interface): None}, Change.call())
        return status

    def join_group(self, join: Join) -> JoinStatus:
        try:
            return groupcalls.join_group(self.joins, join)
        finally:
            self._transaction.record_joins()  # what the join sockets hold

    def leave_group(self, key: JoinKey) -> Join:
        try:
            return groupcalls.leave_group(self.joins, key)
        finally:
            self._transaction.record_joins()

    def reload(self) -> ReloadResult:
        """The state file and the configuration files again: both are read (and a
        problem in either raised) before anything changes."""
        return self._sources.reload()

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

    # == learned flows ==================================================================
    def flush_learned(self, family: Family | None = None, table: int | None = None) -> int:
        change = Change.best_effort()  # a flow that cannot be removed is logged, kept
        dropped = self._flows.drop_all(self._tables.matching(family, table), change)
        self._transaction.publish(change)
        return dropped

    def expire_learned(self) -> int:
        """Drop learned flows that forwarded nothing for learned_expiry seconds."""
        return self._watchers.expire_learned()
