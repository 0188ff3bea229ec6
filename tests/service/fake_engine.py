"""A small in-memory EngineAPI for the service tests (no kernel)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from mfc_dbus.engine import EngineListener, ReloadResult, groupcalls, identity
from mfc_dbus.engine.joins import Join, JoinKey, JoinManager, JoinStatus
from mfc_dbus.engine.listing import RoutePage, decode_token, encode_token, order_of, select
from mfc_dbus.engine.outputs import with_outputs, without_outputs
from mfc_dbus.errors import InvalidArgument, LimitExceeded, NoSuchInterface, NotFound
from mfc_dbus.kernel.membership import Membership
from mfc_dbus.model import (
    MAX_VIFS,
    Family,
    Route,
    RouteKey,
    RouteStatus,
    VifConfig,
    VifStatus,
)


@dataclass
class FakeEngine:
    """Keeps routes and VIFs in dicts; `interfaces` are the names that "exist"."""

    interfaces: set[str] = field(default_factory=lambda: {"up0", "down0", "down1"})
    families: tuple[Family, ...] = (Family.IPV4, Family.IPV6)
    routes: dict[RouteKey, Route] = field(default_factory=dict)
    vifs: dict[tuple[str, Family, int], VifStatus] = field(default_factory=dict)
    listeners: list[EngineListener] = field(default_factory=list)
    reloads: int = 0
    learned_flushes: list[tuple[Family | None, int | None]] = field(default_factory=list)
    started: bool = False
    stopped: bool = False
    joins: JoinManager = field(init=False)

    def __post_init__(self) -> None:
        names = {name: index for index, name in enumerate(sorted(self.interfaces), 2)}
        self.joins = JoinManager(_NoMemberships(), names)
        self.joins.on_joined = lambda join: [each.group_joined(join) for each in self.listeners]
        self.joins.on_left = lambda join: [each.group_left(join) for each in self.listeners]

    def join_group(self, join: Join) -> JoinStatus:
        return groupcalls.join_group(self.joins, join)

    def leave_group(self, key: JoinKey) -> Join:
        return groupcalls.leave_group(self.joins, key)

    def list_groups(
        self, family: Family | None = None, table: int | None = None
    ) -> list[JoinStatus]:
        return groupcalls.list_groups(self.joins, family, table)

    @property
    def group_count(self) -> int:
        return len(self.joins.joins())

    async def start(self) -> None:
        self.started = True

    verifying = False  # no adopted kernel table to verify

    async def verified(self) -> None:
        return

    async def stop(self, flush: bool = True) -> None:
        self.stopped = True

    def _check(self, route: Route) -> None:
        for name in route.interfaces:
            if name not in self.interfaces:
                raise NoSuchInterface(f"interface {name!r} does not exist")

    def add_route(
        self, route: Route, *, counters: bool = True, replace: bool = False
    ) -> RouteStatus:
        self._check(route)
        identity.refuse_other_input(self.routes.get(route.key), route, replace)
        self.routes[route.key] = route
        status = RouteStatus(route, "installed")
        for listener in self.listeners:
            listener.route_added(route)
        return status

    def add_routes(self, routes: Sequence[Route], *, replace: Collection[RouteKey] = ()) -> int:
        for route in routes:
            self._check(route)
            identity.refuse_other_input(self.routes.get(route.key), route, route.key in replace)
        for route in routes:
            self.add_route(route, replace=True)
        return len(routes)

    def remove_route(self, key: RouteKey, input: str = "") -> Route:
        route = self.routes.pop(self._find(key, input).key)
        for listener in self.listeners:
            listener.route_removed(route)
        return route

    def _find(self, key: RouteKey, input: str) -> Route:
        base = key.without_input()
        found = [r for k, r in self.routes.items()
                 if k.without_input() == base and input in ("", r.input)]  # fmt: skip
        if not found:
            raise NotFound(f"no route {key}")
        if len(found) > 1:
            raise InvalidArgument(f"route {key} has several inputs; name one")
        return found[0]

    def add_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        return self._replace(with_outputs(self._find(key, input), outputs))

    def remove_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        return self._replace(without_outputs(self._find(key, input), outputs))

    def _replace(self, route: Route) -> Route:
        if self.routes.get(route.key) is not route:
            self.add_route(route)
        return route

    def flush_learned(self, family: Family | None = None, table: int | None = None) -> int:
        self.learned_flushes.append((family, table))
        return 0

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Route]:
        keys = [
            key
            for key in self.routes
            if (family is None or key.family == family) and (table is None or key.table == table)
        ]
        return [self.remove_route(key) for key in keys]

    def lease_owners(self) -> set[str]:
        owners = {route.owner for route in self.routes.values() if route.owner}
        return owners | groupcalls.lease_owners(self.joins)

    def remove_routes_owned_by(self, owner: str) -> list[Route]:
        self.joins.remove_owned_by(owner)
        keys = [key for key, route in self.routes.items() if route.owner == owner]
        return [self.remove_route(key) for key in keys]

    def list_routes(
        self, family: Family | None = None, table: int | None = None
    ) -> list[RouteStatus]:
        return self.list_page(family, table).statuses

    def list_page(self, family=None, table=None, *, after=None, limit=None) -> RoutePage:
        """The engine's own order and tokens (engine/listing.py) over these routes."""
        if limit is not None and limit < 1:
            raise InvalidArgument(f"limit={limit}: give at least 1")
        rows = [
            (order_of(key), route)
            for key, route in self.routes.items()
            if (family is None or key.family == family) and (table is None or key.table == table)
        ]
        chosen, more = select(rows, decode_token(after) if after else None, limit)
        statuses = [RouteStatus(route, "installed") for _order, route in chosen]
        return RoutePage(statuses, encode_token(chosen[-1][0]) if more else None)

    def add_vif(self, config: VifConfig) -> VifStatus:
        if config.interface not in self.interfaces:
            raise NoSuchInterface(f"interface {config.interface!r} does not exist")
        if len(self.vifs) >= MAX_VIFS:
            raise LimitExceeded("the VIF table is full")
        status = VifStatus(
            config.interface, config.family, config.table, len(self.vifs),
            config.ttl_threshold, explicit=True,
        )  # fmt: skip
        self.vifs[(config.interface, config.family, config.table)] = status
        for listener in self.listeners:
            listener.vif_added(status)
        return status

    def remove_vif(self, interface: str, family: Family, table: int = 0) -> VifStatus:
        status = self.vifs.pop((interface, family, table), None)
        if status is None:
            raise NotFound(f"no VIF for {interface}")
        for listener in self.listeners:
            listener.vif_removed(status)
        return status

    def list_vifs(self, family: Family | None = None, table: int | None = None) -> list[VifStatus]:
        return [
            vif
            for vif in self.vifs.values()
            if (family is None or vif.family == family) and (table is None or vif.table == table)
        ]

    def reload(self) -> ReloadResult:
        self.reloads += 1
        return ReloadResult(0, 0, 0, len(self.routes))

    def add_listener(self, listener: EngineListener) -> None:
        self.listeners.append(listener)

    @property
    def route_count(self) -> int:
        return len(self.routes)

    @property
    def vif_count(self) -> int:
        return len(self.vifs)


class _NoMemberships:
    """A kernel side that accepts every membership (the service tests need no kernel)."""

    def join(self, membership: Membership) -> None:
        pass

    def leave(self, membership: Membership) -> None:
        pass

    def leave_interface(self, ifindex: int) -> list[Membership]:
        return []

    def close(self) -> None:
        pass

    version = 0  # nothing is kept across restarts here

    def adopt(self, recorded: dict) -> None:
        pass

    def settle_adopted(self) -> list:
        return []

    def holdings(self) -> dict:
        return {}
