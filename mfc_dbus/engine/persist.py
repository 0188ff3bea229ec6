"""Persistence: the persistent routes and explicit VIFs in the state file (state.py).

The engine's persistent routes are kept here as values and rendered to JSON when first
written: a change appends the records it touched to the file's journal and keeps them,
a snapshot joins them (rendering those never written, such as the routes a start
restored: it renders none of its 100,000). When the journals outgrow twice the
snapshot, a compaction writes a new one in a worker thread (compaction.py) while calls
go on. The stop writes a snapshot only if the file is behind (a journal to compact, or
a change not written), so a restart that changed nothing rewrites nothing.
A state file that cannot be read at start is moved aside and the engine starts
empty; if it cannot even be moved, persistent changes are refused until it is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InvalidArgument
from ..model import Route, RouteKey, VifConfig
from .api import ReloadResult
from .change import Change, RouteChange, VifId
from .compaction import Compaction, compaction_steps
from .joins import Join, JoinKey
from .joinstate import join_record, journal_join, journal_unjoin
from .state import StateFile, StateFileError
from .stateparse import SavedState
from .staterecords import (
    journal_route,
    journal_unroute,
    journal_unvif,
    journal_vif,
    route_record,
    vif_record,
)
from .table import Table
from .undo import put_or_pop

log = logging.getLogger(__name__)

RouteLine = tuple[Route | None, RouteKey]  # (route, key); None: removed


class Persistence:
    def __init__(self, path: Path | None) -> None:
        self._file = StateFile(path) if path is not None else None
        self.error: str | None = None  # why the state file was set aside at start
        self.aside: Path | None = None  # where it went
        self._blocked: str | None = None  # why persistent changes are refused
        # A persistent route, or its JSON record once rendered for the journal.
        self._routes: dict[RouteKey, Route | str] = {}
        self._behind = False  # records changed that the file does not have
        self._vifs: dict[VifId, str] = {}
        self._joins: dict[JoinKey, str] = {}
        self.reloaded_joins: tuple[Join, ...] = ()  # the joins the last reload read
        self._compaction: Compaction | None = None  # running in a worker thread

    # -- start, stop ----------------------------------------------------------------
    def load_at_start(self) -> SavedState:
        """What the state file holds; empty (and the file set aside) when it is bad."""
        if self._file is None:
            return SavedState()
        try:
            saved = self._file.load()
        except StateFileError as exc:
            self.error = str(exc)
            self._set_aside(exc)
            return SavedState()
        self._joins = {join.key: join_record(join) for join in saved.joins}  # recorded
        return saved

    def _set_aside(self, exc: StateFileError) -> None:
        assert self._file is not None
        try:
            self.aside = self._file.set_aside()
        except OSError as aside_exc:
            self._blocked = (
                f"{exc}; it could not be moved aside ({aside_exc.strerror}), so "
                "persistent changes are refused until it is fixed or removed"
            )
            log.error("%s", self._blocked)
        else:
            log.error("%s; it was moved to %s and the service starts with no routes",
                      exc, self.aside)  # fmt: skip

    def close(self) -> None:
        """Write the snapshot (compacting the journals) and close the file."""
        if self._file is not None:
            self.wait_for_compaction()
            if self._behind or self._file.journal_entries or not self._file.path.exists():
                self._compact()
            self._file.close()

    def restored(self) -> None:
        """At start: what the records hold now is what the file holds."""
        self._behind = False

    def _compact(self) -> None:
        if self._blocked is None:
            try:
                self._write_snapshot()
            except StateFileError as exc:
                log.error("%s", exc)

    @property
    def compacting(self) -> bool:
        """A compaction is running (or complete and not yet accounted for)."""
        return self._compaction is not None

    def wait_for_compaction(self) -> None:
        """Return once no compaction runs (a reload and the stop read or write the files
        themselves)."""
        if self._compaction is not None:
            self._compaction.wait()
        self._collect()

    # -- changes ----------------------------------------------------------------------
    def record(
        self, routes: list[RouteChange], vifs: dict[VifId, VifConfig | None], change: Change
    ) -> None:
        """Keep the records of a change, and write it if the change persists; raises
        StateFileError (the change is then undone)."""
        if self._file is None:
            return
        lines = self._record_routes(routes, change)
        vif_lines = self._record_vifs(vifs, change)
        if (lines or vif_lines) and change.persist:
            self._save(lines, vif_lines)
        elif lines or vif_lines:
            self._behind = True

    def _record_routes(self, routes: list[RouteChange], change: Change) -> list[RouteLine]:
        records = self._routes
        undo: list[tuple[RouteKey, Route | str | None]] = []  # one undo step for the batch
        change.undo.push(_restore_records, records, undo)
        lines: list[RouteLine] = []
        for old, new in routes:
            if new is not None and new.persistent and new.owner is None:
                key = new.key
                undo.append((key, records.get(key) if old is not None else None))
                records[key] = new
                lines.append((new, key))
            elif old is not None and old.key in records:
                key = old.key
                undo.append((key, records.pop(key)))
                lines.append((None, key))
        return lines

    def _record_vifs(self, vifs: dict[VifId, VifConfig | None], change: Change) -> list[str]:
        lines: list[str] = []
        for vid, config in vifs.items():
            old = self._vifs.get(vid)
            new = vif_record(config) if config is not None and config.persistent else None
            if new == old:
                continue
            put_or_pop(self._vifs, vid, new)
            change.undo.push(put_or_pop, self._vifs, vid, old)
            lines.append(journal_vif(new) if new is not None else journal_unvif(*vid))
        return lines

    def record_join(self, join: Join, joined: bool) -> None:
        """Write a join made or left, if it persists; raises StateFileError (nothing is
        recorded then)."""
        if self._file is None:
            return
        key = join.key
        keep = joined and join.persistent and join.owner is None and not join.origin
        new = join_record(join) if keep else None
        old = self._joins.get(key)
        if new == old:
            return
        put_or_pop(self._joins, key, new)
        try:
            self._save([], [journal_join(new) if new is not None else journal_unjoin(key)])
        except StateFileError:
            put_or_pop(self._joins, key, old)
            raise

    def _save(self, lines: list[RouteLine], vif_lines: list[str]) -> None:
        """Make a change durable: append it to the journal; when the journals outgrow
        twice the snapshot, start a compaction."""
        assert self._file is not None
        if self._blocked is not None:
            raise StateFileError(self._blocked)
        self._collect()
        records = self._routes
        rendered = {key: route_record(route) for route, key in lines if route is not None}
        entries = [
            journal_route(rendered[key]) if route is not None else journal_unroute(key)
            for route, key in lines
        ]
        self._file.append(entries + vif_lines)
        records.update(rendered)  # kept: a snapshot joins them
        size = len(records) + len(self._vifs) + len(self._joins)
        if self._compaction is None and self._file.journal_entries > 2 * size + 64:
            self._start_compaction()

    def _collect(self) -> None:
        """Account for a compaction that is complete."""
        compaction = self._compaction
        if compaction is None or not compaction.done:
            return
        compaction.wait()
        self._compaction = None
        assert self._file is not None
        if compaction.error is None:
            self._file.journal_entries -= compaction.entries
        else:
            self._behind = True  # its records are still only in the journals

    def _start_compaction(self) -> None:
        try:
            steps = self._snapshot_steps()
        except StateFileError as exc:
            log.error("%s; compacting later", exc)
            return
        assert self._file is not None
        self._compaction = Compaction(steps, self._file.journal_entries)

    def _snapshot_steps(self) -> Iterator[str]:
        """Set the journal aside and take the state as it is now (O(records) list
        copies); the steps that write it (compaction.py)."""
        assert self._file is not None
        journals = self._file.rotate()
        self._behind = False
        return compaction_steps(
            self._file,
            list(self._routes.values()),
            list(self._vifs.values()),
            list(self._joins.values()),
            journals,
        )

    def _write_snapshot(self) -> None:
        """A compaction on this thread, waited for (the stop)."""
        assert self._file is not None
        if self._blocked is not None:
            raise StateFileError(self._blocked)
        entries = self._file.journal_entries
        try:
            for _ in self._snapshot_steps():
                pass
        except StateFileError:
            self._behind = True
            raise
        self._file.journal_entries -= entries

    # -- Reload ---------------------------------------------------------------------------
    def reload(
        self, routes: dict[RouteKey, Route], tables: Iterable[Table]
    ) -> tuple[dict[RouteKey, Route | None], dict[VifId, VifConfig | None], ReloadResult]:
        """The changes that bring the persistent routes and VIFs to what the state file
        holds now, and their count; raises StateFileError (then nothing changes)."""
        if self._file is None:
            raise InvalidArgument("this engine has no state file to reload")
        self.wait_for_compaction()
        saved = self._file.load()
        self.reloaded_joins = saved.joins
        route_changes, result = _route_plan(routes, saved.routes)
        return route_changes, _vif_plan(tables, saved.vifs), result


def _restore_records(
    records: dict[RouteKey, Route | str], undo: list[tuple[RouteKey, Route | str | None]]
) -> None:
    for key, record in reversed(undo):
        put_or_pop(records, key, record)


def _route_plan(
    routes: dict[RouteKey, Route], saved: Iterable[Route]
) -> tuple[dict[RouteKey, Route | None], ReloadResult]:
    wanted = {route.key: route for route in saved}
    changes: dict[RouteKey, Route | None] = {}
    added = changed = unchanged = removed = 0
    for key, route in routes.items():
        if route.persistent and route.owner is None and key not in wanted:
            changes[key] = None
            removed += 1
    for key, route in wanted.items():
        current = routes.get(key)
        if current == route:
            unchanged += 1
            continue
        changes[key] = route
        if current is None:
            added += 1
        else:
            changed += 1
    return changes, ReloadResult(added, removed, changed, unchanged)


def _vif_plan(
    tables: Iterable[Table], saved: Iterable[VifConfig]
) -> dict[VifId, VifConfig | None]:
    wanted = {(c.family, c.table, c.interface): c for c in saved}
    changes: dict[VifId, VifConfig | None] = {}
    explicit: dict[VifId, VifConfig] = {}
    for table in tables:
        for name, config in table.vifs.explicit.items():
            explicit[(table.family, table.table, name)] = config
    for vid, config in explicit.items():
        if config.persistent and vid not in wanted:
            changes[vid] = None
    for vid, config in wanted.items():
        if explicit.get(vid) != config:
            changes[vid] = config
    return changes
