"""The engine's asyncio side: upcalls on each table's socket, link events from
rtnetlink, and the housekeeping timer (learned flows expire, busy tables are retried).

Each turns what it read into a best-effort change (change.py) and publishes it
through the transaction (transaction.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .change import Change
from .joins import JoinManager, follow_interface
from .learned import Flows
from .links import Hotplug, Interfaces
from .port import KernelPort, LinkWatcher
from .reconcile import Reconciler
from .table import Table
from .tables import KernelTables
from .transaction import Transaction

log = logging.getLogger(__name__)


class Watchers:
    def __init__(
        self,
        kernel: KernelPort,
        tables: KernelTables,
        interfaces: Interfaces,
        hotplug: Hotplug,
        reconciler: Reconciler,
        flows: Flows,
        joins: JoinManager,
        transaction: Transaction,
        *,
        clock: Callable[[], float],
        expiry_interval: float,
        busy_retry: float,
    ) -> None:
        self._kernel = kernel
        self._tables = tables
        self._interfaces = interfaces
        self._hotplug = hotplug
        self._reconciler = reconciler
        self._flows = flows
        self._joins = joins
        self._transaction = transaction
        self._clock = clock
        self._expiry_interval = expiry_interval
        self._busy_retry = busy_retry
        self._last_busy_retry = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link_watcher: LinkWatcher | None = None

    def watch_links(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe to link events, then read the interface list (nothing is missed)."""
        self._loop = loop
        try:
            self._link_watcher = self._kernel.watch_links()  # subscribe before the list is read
        except OSError as exc:
            log.error("cannot watch interfaces (rtnetlink): %s; hotplug is disabled", exc)
        self._interfaces.read()
        if self._link_watcher is not None:
            loop.add_reader(self._link_watcher.fileno(), self._on_link_events)

    def watch_table(self, table: Table) -> None:
        """Read the upcalls of a table whose socket just opened."""
        assert table.sock is not None
        if self._loop is not None:
            self._loop.add_reader(table.sock.fileno(), self._on_upcalls, table)

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._link_watcher is not None:
            self._loop.remove_reader(self._link_watcher.fileno())
            self._link_watcher.close()
            self._link_watcher = None
        for table in self._tables:
            if table.sock is not None:
                self._loop.remove_reader(table.sock.fileno())

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
        self._transaction.publish(change)

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
                follow_interface(self._joins, event)
            except Exception:
                log.exception("link event %s failed", event)
        self._transaction.publish(change)

    async def housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_interval)
            try:
                self.expire_learned()
                self._retry_busy()
            except Exception:
                log.exception("housekeeping failed")

    def expire_learned(self) -> int:
        """Drop learned flows that forwarded nothing for learned_expiry seconds."""
        change = Change.best_effort()
        expired = self._flows.expire(self._tables, change)
        self._transaction.publish(change)
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
            self._transaction.publish(change)
