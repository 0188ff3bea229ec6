"""The engine's public API: what the service codes against. It knows nothing of D-Bus.

All methods run on the asyncio loop's thread; the kernel calls they make are fast,
non-blocking setsockopt calls, so they are plain functions.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..model import Family, Route, RouteKey, RouteStatus, VifConfig, VifStatus

if TYPE_CHECKING:
    from .joins import Join, JoinKey, JoinStatus
    from .listing import RoutePage


class EngineListener(Protocol):
    """Told of every change, whatever caused it (a call, an upcall, expiry, hotplug,
    a lease ending, Reload). The service turns these into D-Bus signals.
    route_added is called for each route of a batch: keep it cheap."""

    def route_added(self, route: Route) -> None: ...

    def route_removed(self, route: Route) -> None: ...

    def vif_added(self, vif: VifStatus) -> None: ...

    def vif_removed(self, vif: VifStatus) -> None: ...

    def group_joined(self, join: Join) -> None:
        """A group join was added or replaced (a call, Reload, the configuration)."""

    def group_left(self, join: Join) -> None:
        """A group join was removed (a call, a lease ending, Reload)."""


@dataclass(frozen=True)
class ReloadResult:
    added: int
    removed: int
    changed: int
    unchanged: int


class EngineAPI(Protocol):
    """The contract implemented by mfc_dbus.engine.core.Engine."""

    @property
    def families(self) -> tuple[Family, ...]:
        """The families whose kernel socket opened (table 0)."""

    async def start(self) -> None:
        """Load the state file (a corrupt one is moved aside and reported, never fatal),
        subscribe to link events, then install what can be installed. A kernel table
        adopted from a previous process is verified after start (see `verified`)."""

    @property
    def verifying(self) -> bool:
        """An adopted kernel table is still being compared with the restored state."""

    async def verified(self) -> None:
        """Returns once every adopted kernel table is verified."""

    async def stop(self, flush: bool = True) -> None:
        """Save the state file, then close the kernel sockets (which flushes the kernel)."""

    def add_route(
        self, route: Route, *, counters: bool = True, replace: bool = False
    ) -> RouteStatus:
        """Add, or replace in place (no forwarding gap), a route. Validates first.
        A (*,G) or prefix route from another input is another route; an exact (S,G)
        that exists from another input is AlreadyExists unless `replace`.
        counters=False: the returned status has zero counters (no kernel read)."""

    def add_routes(self, routes: Sequence[Route], *, replace: Collection[RouteKey] = ()) -> int:
        """All-or-nothing batch: validate all, apply, roll back everything on failure.
        replace: the keys of exact (S,G) that may move to another input."""

    def remove_route(self, key: RouteKey, input: str = "") -> Route:
        """Raises NotFound when no route has this key (from `input`, if given);
        InvalidArgument listing the inputs when `input` is "" and several (*,G) or
        prefix routes share the key."""

    def add_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        """Add outputs to the configured route `key` in place (names it has already are
        no-ops); which route as remove_route; AlreadyExists for a configuration file's
        route. Returns the route as it is now."""

    def remove_outputs(self, key: RouteKey, outputs: Sequence[str], input: str = "") -> Route:
        """Remove outputs of route `key` in place (names it lacks are no-ops); with none
        left it is a blocking route. NotFound as add_outputs."""

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Route]:
        """Remove every configured route (optionally of one family/table)."""

    def remove_routes_owned_by(self, owner: str) -> list[Route]:
        """Drop the lease routes of a bus name that left the bus."""

    def flush_learned(self, family: Family | None = None, table: int | None = None) -> int:
        """Drop the (S,G) flows learned from (*,G) and prefix routes (optionally of one
        family/table); configured routes stay, and each flow is learned again when its
        next packet arrives. Returns how many were dropped."""

    def lease_owners(self) -> set[str]:
        """The bus names holding lease routes (after a restart: to check they are
        still on the bus)."""

    def list_routes(
        self, family: Family | None = None, table: int | None = None
    ) -> list[RouteStatus]:
        """Configured and learned routes, with state and counters, in listing order."""

    def list_page(
        self,
        family: Family | None = None,
        table: int | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> RoutePage:
        """The first `limit` routes (None: all) after the resume token `after` (None:
        from the start) in a stable order by value; the page's `next` is the token of
        the page after it, None on the last. InvalidArgument for a token ListRoutes did
        not make or a limit of 0."""

    def add_vif(self, config: VifConfig) -> VifStatus:
        """Explicit VIF/MIF with a TTL threshold; LimitExceeded when the table is full."""

    def remove_vif(self, interface: str, family: Family, table: int = 0) -> VifStatus:
        """NotFound if absent; InvalidArgument if a route still uses it."""

    def list_vifs(
        self, family: Family | None = None, table: int | None = None
    ) -> list[VifStatus]: ...

    def join_group(self, join: Join) -> JoinStatus:
        """Join a group (or replace a runtime join with the same key); AlreadyExists
        for a configuration file's join."""

    def leave_group(self, key: JoinKey) -> Join:
        """NotFound if absent; InvalidArgument for a configuration file's join."""

    def list_groups(
        self, family: Family | None = None, table: int | None = None
    ) -> list[JoinStatus]: ...

    @property
    def group_count(self) -> int: ...

    def reload(self) -> ReloadResult:
        """Re-read the state file and apply only the difference."""

    def add_listener(self, listener: EngineListener) -> None: ...

    @property
    def route_count(self) -> int: ...

    @property
    def vif_count(self) -> int: ...
