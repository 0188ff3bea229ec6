"""What the listeners are told, and how.

A change collects events as it goes (a VIF allocated, a flow learned, an interface
gone); each event knows which listener method reports it, and reads its status only
when it is delivered, after the change is made (so a VIF allocated and freed again
within one change is not reported as present). The configured routes a call changed
are reported directly (Listeners.routes_changed): a batch has many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..model import Route, VifStatus
from .api import EngineListener
from .joins import Join
from .status import learned_route, vif_status
from .table import SG, Learned, Table

log = logging.getLogger(__name__)


class Event(Protocol):
    def deliver(self, to: EngineListener) -> None: ...


@dataclass(frozen=True, slots=True, eq=False)
class VifAdded:
    """The VIF of `name` was allocated, installed, reconfigured or lost its interface."""

    table: Table
    name: str

    def deliver(self, to: EngineListener) -> None:
        if self.name in self.table.vifs.slots:  # not freed again later in the change
            to.vif_added(vif_status(self.table, self.name))


@dataclass(frozen=True, slots=True, eq=False)
class VifRemoved:
    table: Table
    name: str
    slot: int

    def deliver(self, to: EngineListener) -> None:
        table = self.table
        to.vif_removed(VifStatus(self.name, table.family, table.table, self.slot, 1, False))


@dataclass(frozen=True, slots=True, eq=False)
class FlowLearned:
    """A flow was learned from a template, or moved to another template."""

    table: Table
    sg: SG
    learned: Learned

    def deliver(self, to: EngineListener) -> None:
        if self.table.learned.get(self.sg) is self.learned:  # not replaced or dropped since
            to.route_added(learned_route(self.table, self.sg, self.learned))


@dataclass(frozen=True, slots=True, eq=False)
class RouteRemoved:
    """A learned flow was dropped (expired, its template gone, taken over)."""

    route: Route

    def deliver(self, to: EngineListener) -> None:
        to.route_removed(self.route)


@dataclass(frozen=True, slots=True, eq=False)
class RouteChanged:
    """A configured route's state changed: one of its interfaces came or went."""

    route: Route

    def deliver(self, to: EngineListener) -> None:
        to.route_added(self.route)


class Listeners:
    """The engine's listeners, told as one; a listener that fails is logged and the
    others are still told."""

    def __init__(self) -> None:
        self._all: list[EngineListener] = []

    def add(self, listener: EngineListener) -> None:
        self._all.append(listener)

    def deliver(self, events: Iterable[Event]) -> None:
        if not self._all:
            return
        for event in events:
            try:
                event.deliver(self)
            except Exception:  # reading its status failed: the other events still go
                log.exception("cannot report %r", event)

    def routes_changed(self, changes: Sequence[tuple[Route | None, Route | None]]) -> None:
        """The configured routes a call changed: (before, after) each."""
        for listener in list(self._all):
            added, removed = listener.route_added, listener.route_removed
            for old, new in changes:
                try:
                    if old is not None and (new is None or new.input != old.input):
                        removed(old)  # an exact (S,G) moved to another input: both
                    if new is not None:
                        added(new)
                except Exception:
                    log.exception("listener %r failed on a route change", listener)

    # -- EngineListener ----------------------------------------------------------------
    def route_added(self, route: Route) -> None:
        self._tell("route_added", lambda listener: listener.route_added(route))

    def route_removed(self, route: Route) -> None:
        self._tell("route_removed", lambda listener: listener.route_removed(route))

    def vif_added(self, vif: VifStatus) -> None:
        self._tell("vif_added", lambda listener: listener.vif_added(vif))

    def vif_removed(self, vif: VifStatus) -> None:
        self._tell("vif_removed", lambda listener: listener.vif_removed(vif))

    def group_joined(self, join: Join) -> None:
        self._tell("group_joined", lambda listener: listener.group_joined(join))

    def group_left(self, join: Join) -> None:
        self._tell("group_left", lambda listener: listener.group_left(join))

    def _tell(self, what: str, call: Callable[[EngineListener], None]) -> None:
        for listener in self._all:
            try:
                call(listener)
            except Exception:
                log.exception("listener %r failed in %s", listener, what)
