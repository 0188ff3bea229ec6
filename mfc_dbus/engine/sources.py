"""Where the configured state comes from besides calls: the state file, the previous
process's runtime record and the configuration files, read at start and on Reload and
applied through the transaction (transaction.py)."""

from __future__ import annotations

from ..model import Route, RouteKey, VifConfig
from . import configured, groupcalls
from .api import ReloadResult
from .change import Change, VifId
from .joins import JoinManager
from .links import Interfaces
from .persist import Persistence
from .runtime import RuntimeRecord
from .state import SavedState
from .tables import KernelTables
from .transaction import Transaction


class StateSources:
    def __init__(
        self,
        state: Persistence,
        config: configured.ConfigFiles | None,
        routes: dict[RouteKey, Route],
        tables: KernelTables,
        interfaces: Interfaces,
        joins: JoinManager,
        transaction: Transaction,
    ) -> None:
        self._state = state
        self._config = config
        self._routes = routes  # the configured routes (the transaction changes them)
        self._tables = tables
        self._interfaces = interfaces
        self._joins = joins
        self._transaction = transaction

    def load_at_start(self, transient: RuntimeRecord) -> None:
        """The state file, the previous process's record (`transient`) and the
        configuration files, onto the tables just opened."""
        self._restore(self._state.load_at_start(), transient)
        self._state.restored()
        for name, index in self._interfaces.ifindex.items():
            self._joins.interface_appeared(name, index)
        if self._config is not None:
            found = self._config.plan_at_start(
                self._routes, self._tables, self._interfaces.ifindex, self._joins.joins()
            )
            if found is not None:
                self._transaction.apply(found.routes, found.vifs, Change.best_effort())
                configured.apply_joins(self._joins, found.joins)

    def _restore(self, saved: SavedState, transient: RuntimeRecord) -> None:
        """The state file's routes, VIFs and joins, and the previous process's
        non-persistent ones."""
        routes: dict[RouteKey, Route | None] = {route.key: route for route in transient.routes}
        routes.update((route.key, route) for route in saved.routes)
        vifs: dict[VifId, VifConfig | None] = {
            (c.family, c.table, c.interface): c for c in saved.vifs
        }
        # This records the state file's entries too (persist.py).
        self._transaction.apply(routes, vifs, Change.best_effort())
        groupcalls.restore(self._joins, [*saved.joins, *transient.joins])

    def reload(self) -> ReloadResult:
        """The state file and the configuration files again: both are read (and a
        problem in either raised) before anything changes."""
        routes, vifs, result = self._state.reload(self._routes, self._tables)
        found = None
        if self._config is not None:
            found = self._config.plan(
                self._routes, self._tables, self._interfaces.ifindex, self._joins.joins()
            )
            routes.update(found.routes)
            vifs.update(found.vifs)
            result = found.summed(result)
        self._transaction.apply(routes, vifs, Change.call())
        if found is not None:
            configured.apply_joins(self._joins, found.joins)
        groupcalls.apply_saved(self._joins, self._state.reloaded_joins)
        self._transaction.record_joins()
        return result
