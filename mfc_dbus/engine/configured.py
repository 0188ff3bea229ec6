"""Routes and VIF settings from the administrator's configuration files (mfc-dbus.conf).

They are neither in the state file (machine-owned) nor leased: each carries its origin,
"FILE:LINE", and is non-persistent, so the runtime record keeps it across a restart
until the files are read again. Files win: a route of a file replaces a runtime route
with the same key, and D-Bus calls cannot change or remove it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import Configuration, ConfigurationError, Location, load_configuration
from ..config.check import ANY_SOURCE, ConfigInterface
from ..errors import AlreadyExists, InvalidArgument, MfcError
from ..model import Family, Route, RouteKey, VifConfig, wildcard_stem
from .api import ReloadResult
from .change import VifId
from .joins import Join, JoinKey, JoinManager, make_join_key
from .tables import KernelTables

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigPlan:
    routes: dict[RouteKey, Route | None]
    vifs: dict[VifId, VifConfig | None]
    joins: JoinPlan
    added: int
    removed: int
    changed: int
    unchanged: int

    def summed(self, result: ReloadResult) -> ReloadResult:
        """The counts of a state file reload with this plan's added."""
        return ReloadResult(
            result.added + self.added,
            result.removed + self.removed,
            result.changed + self.changed,
            result.unchanged + self.unchanged,
        )


class ConfigFiles:
    """The administrator's files: /etc/mfc-dbus/mfc-dbus.conf and conf.d/*.conf."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def plan(
        self,
        routes: dict[RouteKey, Route],
        tables: KernelTables,
        interfaces: Iterable[str],
        joins: Iterable[Join],
    ) -> ConfigPlan:
        """Read the files; ConfigurationError names every problem (nothing changes)."""
        explicit = {
            (table.family, table.table, name): config
            for table in tables
            for name, config in table.vifs.explicit.items()
        }
        return plan(read(self.path), routes, explicit, tables.families, interfaces, joins)

    def plan_at_start(
        self,
        routes: dict[RouteKey, Route],
        tables: KernelTables,
        interfaces: Iterable[str],
        joins: Iterable[Join],
    ) -> ConfigPlan | None:
        """At start a configuration with problems is logged, problem by problem, and not
        applied: what the previous process had from the files (the runtime record)
        stays until a reload applies good files."""
        try:
            return self.plan(routes, tables, interfaces, joins)
        except ConfigurationError as exc:
            log.error("the configuration is not applied: %s", exc.message)
            return None


def read(path: Path) -> Configuration:
    """The configuration of the main file and conf.d/; ConfigurationError names every
    problem (nothing of it may be applied then)."""
    return load_configuration(path)


def plan(
    configuration: Configuration,
    routes: dict[RouteKey, Route],
    explicit_vifs: dict[VifId, VifConfig],
    families: Iterable[Family],
    interfaces: Iterable[str],
    joins: Iterable[Join] = (),
) -> ConfigPlan:
    """The changes that make the configured routes, VIFs and joins what the files say."""
    wanted_routes = {route.key: route for route in _routes(configuration, list(interfaces))}
    wanted_vifs = {
        (config.family, config.table, config.interface): config
        for config in _vifs(configuration.interfaces, tuple(families), list(interfaces))
    }
    route_changes: dict[RouteKey, Route | None] = {
        key: None for key, route in routes.items() if route.origin and key not in wanted_routes
    }
    removed = len(route_changes)
    added = changed = unchanged = 0
    for key, route in wanted_routes.items():
        current = routes.get(key)
        if current == route:
            unchanged += 1
            continue
        route_changes[key] = route
        if current is None or not current.origin:
            added += 1
        else:
            changed += 1
    vif_changes: dict[VifId, VifConfig | None] = {
        vid: None
        for vid, config in explicit_vifs.items()
        if config.origin and vid not in wanted_vifs
    }
    vif_changes.update(
        (vid, config) for vid, config in wanted_vifs.items() if explicit_vifs.get(vid) != config
    )
    join_plan = plan_joins(configuration, joins)
    return ConfigPlan(route_changes, vif_changes, join_plan, added, removed, changed, unchanged)


@dataclass(frozen=True, slots=True)
class JoinPlan:
    leave: list[JoinKey]
    join: list[Join]


def plan_joins(configuration: Configuration, current: Iterable[Join]) -> JoinPlan:
    """Joins are not part of a change's transaction (a join is no kernel table entry):
    those gone from the files are left, new or changed ones joined, after the routes."""
    wanted: dict[JoinKey, Join] = {}
    for join in configuration.joins:
        source = "" if join.source == ANY_SOURCE else join.source
        key = make_join_key(join.interface, source, join.group, join.table)
        wanted[key] = Join(key, persistent=False, origin=_where(join.origin))
    held = {join.key: join for join in current}
    leave = [key for key, join in held.items() if join.origin and wanted.get(key) != join]
    join_now = [join for key, join in wanted.items() if held.get(key) != join]
    return JoinPlan(leave, join_now)


def apply_joins(manager: JoinManager, joins: JoinPlan) -> None:
    """Leave, then join; a join the kernel refuses is logged and the others go on (its
    status says why, and it is tried again when its interface comes back)."""
    for key in joins.leave:
        manager.remove(key)
    for join in joins.join:
        try:
            manager.add(join)
        except MfcError as exc:
            log.error("%s: group join %s: %s", join.origin, join.key, exc.message)


def _routes(configuration: Configuration, interfaces: list[str]) -> list[Route]:
    """A route from a wildcard input (eth+: a (*,G) or prefix route only) is one route
    per matching interface present now, except its own outputs; a line naming an
    interface wins over a wildcard matching it, and the first wildcard over later ones."""
    named = [route for route in configuration.routes if wildcard_stem(route.input) is None]
    wildcards = [route for route in configuration.routes if wildcard_stem(route.input) is not None]
    routes: dict[RouteKey, Route] = {}
    for line in named + wildcards:
        for name in _matching(line.input, interfaces):
            if name in line.outputs and name != line.input:
                continue  # a wildcard matching an output
            route = Route(
                line.key, name, line.outputs, persistent=False, origin=_where(line.origin)
            )
            routes.setdefault(route.key, route)
    return list(routes.values())


def _vifs(
    settings: list[ConfigInterface], families: tuple[Family, ...], interfaces: list[str]
) -> list[VifConfig]:
    """An enabled phyint is a VIF in every family the kernel offers (smcroute's phyint
    covers both); a wildcard such as eth+ means the interfaces present now."""
    configs = []
    for setting in settings:
        if not setting.enabled:
            continue
        for name in _matching(setting.interface, interfaces):
            for family in families:
                configs.append(
                    VifConfig(
                        name,
                        family,
                        setting.table,
                        setting.ttl_threshold,
                        persistent=False,
                        origin=_where(setting.origin),
                        mrdisc=setting.mrdisc,
                    )
                )
    return configs


def _matching(pattern: str, interfaces: list[str]) -> list[str]:
    stem = wildcard_stem(pattern)
    if stem is not None:
        return sorted(name for name in interfaces if name.startswith(stem))
    return [pattern]


def _where(origin: Location | None) -> str:
    return f"{origin.path}:{origin.line}" if origin is not None else "a configuration file"


# -- what D-Bus calls may not do to them ------------------------------------------------
def refuse_replacing(current: Route | None) -> None:
    if current is not None and current.origin:
        raise AlreadyExists(
            f"route {current.key} is configured in {current.origin}; change it there and "
            "reload (mfc-dbus reload)"
        )


def refuse_removing(current: Route) -> None:
    if current.origin:
        raise InvalidArgument(
            f"route {current.key} is configured in {current.origin}; remove it there and "
            "reload (mfc-dbus reload)"
        )


def refuse_vif_change(current: VifConfig | None) -> None:
    if current is not None and current.origin:
        raise InvalidArgument(
            f"the {current.family} VIF of {current.interface!r} is configured in "
            f"{current.origin}; change it there and reload (mfc-dbus reload)"
        )
