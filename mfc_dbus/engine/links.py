"""Interfaces and hotplug: the ifindex of every interface name, kept current from link
events, and the VIFs that follow their interface as it comes, goes or is renamed.

A VIF is tied to an ifindex: when its interface is deleted the kernel removes the VIF
(and leaves the entries that point at it), and an interface created again with the
same name has another ifindex. The slot stays with the name meanwhile, and the
routes that use it are pending until it returns.
"""

from __future__ import annotations

import logging

from ..kernel.netlink import LinkEvent
from ..model import Route, RouteKey
from .change import Change
from .events import RouteChanged, VifAdded
from .port import KernelPort
from .reconcile import Reconciler
from .table import Table
from .tables import KernelTables

log = logging.getLogger(__name__)


class Interfaces:
    """Interface name -> ifindex of this namespace."""

    def __init__(self, kernel: KernelPort) -> None:
        self._kernel = kernel
        self.ifindex: dict[str, int] = {}

    def read(self) -> None:
        """Take the kernel's list (after subscribing to link events)."""
        self.ifindex = self.current()

    def current(self) -> dict[str, int]:
        """The kernel's list now (not recorded)."""
        return dict(self._kernel.interface_indexes())

    def lookup(self, name: str) -> int | None:
        index = self.ifindex.get(name)
        if index is None:
            # Created a moment ago and its link event is not read yet?
            index = self._kernel.ifindex(name)
            if index is not None:
                self.ifindex[name] = index
        return index


class Hotplug:
    def __init__(
        self,
        interfaces: Interfaces,
        tables: KernelTables,
        reconciler: Reconciler,
        routes: dict[RouteKey, Route],
    ) -> None:
        self._interfaces = interfaces
        self._tables = tables
        self._reconciler = reconciler
        self._routes = routes  # the configured routes (shared with the engine)

    def handle(self, event: LinkEvent, change: Change) -> None:
        if not self._index_changed(event, change):
            return
        for table in self._tables:
            if event.name in table.vifs.slots and table.sock is not None:
                self._follow(table, event, change)

    def resync(self, change: Change) -> None:
        """Link events were lost: compare with a fresh interface list."""
        now = self._interfaces.current()
        for name, index in list(self._interfaces.ifindex.items()):
            if now.get(name) != index:
                self.handle(LinkEvent("del", name, index), change)
        for name, index in now.items():
            self.handle(LinkEvent("new", name, index), change)

    def _index_changed(self, event: LinkEvent, change: Change) -> bool:
        """Record the event; False when it changes nothing the VIFs depend on."""
        name, index = event.name, event.index
        known = self._interfaces.ifindex
        if event.kind == "del":
            if known.get(name) != index:
                return False
            del known[name]
            return True
        if known.get(name) == index and all(
            name in t.live or name not in t.vifs.slots or t.sock is None for t in self._tables
        ):
            return False  # the same interface (a state change) with its VIFs in place
        # Renamed: the index was known under another name, which is gone.
        for other, other_index in list(known.items()):
            if other_index == index and other != name:
                self.handle(LinkEvent("del", other, index), change)
        known[name] = index
        return True

    def _follow(self, table: Table, event: LinkEvent, change: Change) -> None:
        """Move the VIF of `event.name` in `table` to its interface, or drop it."""
        name, index = event.name, event.index
        if event.kind == "new":
            live = table.live_vifs.get(table.live.get(name, -1))
            if live is not None and live[1] == index:
                return
            table.forget_vif(name)
            table.install_vif(name, index, change.undo, change.strict)
        else:
            table.forget_vif(name)
        change.report(VifAdded(table, name))
        self._reconciler.sync_users_of(table, name, change)
        for key in self._reconciler.keys_using(table, name):
            change.report(RouteChanged(self._routes[key]))
        log.info("%s: interface %s %s (index %d)", table.describe, name,
                 "appeared" if event.kind == "new" else "disappeared", index)  # fmt: skip
