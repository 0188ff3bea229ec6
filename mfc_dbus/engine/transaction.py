"""The change transaction: every change to the configured routes and VIFs, whoever
asks for it (a call, the state file, a configuration file, start-up).

It changes the desired state (desired.py), reconciles the kernel (reconcile.py),
writes the state file (persist.py) and only then tells the listeners (events.py); any
failure undoes everything (undo.py). Best-effort changes (upcalls, link events,
expiry) are made by their own parts and published here.
"""

from __future__ import annotations

from ..gcpause import gc_paused_if_many
from ..model import Route, RouteKey, VifConfig
from .change import Change, VifId
from .desired import change_desired
from .events import Listeners
from .joins import JoinManager
from .persist import Persistence
from .reconcile import Reconciler
from .runtime import RuntimeState
from .tables import KernelTables


class Transaction:
    def __init__(
        self,
        routes: dict[RouteKey, Route],
        tables: KernelTables,
        reconciler: Reconciler,
        state: Persistence,
        runtime: RuntimeState,
        listeners: Listeners,
        joins: JoinManager,
    ) -> None:
        self._routes = routes  # the configured routes, changed in place
        self._tables = tables
        self._reconciler = reconciler
        self._state = state
        self._runtime = runtime
        self._listeners = listeners
        self._joins = joins

    def apply(
        self,
        routes: dict[RouteKey, Route | None],
        vifs: dict[VifId, VifConfig | None],
        change: Change,
    ) -> None:
        """Routes and VIFs by key (None: removed), made as `change` says."""
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
            self.publish(change)
            self._listeners.routes_changed(desired.routes)

    def publish(self, change: Change) -> None:
        """A change is made: record it for the next process, tell the listeners."""
        self._runtime.save(self._tables)
        self._listeners.deliver(change.events)

    def record_joins(self) -> None:
        """Joins were made or left: the runtime record keeps the non-persistent ones and
        what the join sockets hold."""
        self._runtime.track_joins(self._joins.joins())
        self._runtime.save(self._tables)
