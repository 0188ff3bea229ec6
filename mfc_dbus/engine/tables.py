"""The engine's kernel tables, one per (family, table id) in use, and their sockets:
opened when first needed, the reason kept when the kernel refuses (another router
holds the table, the family is not built in), retried later when it was busy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from ..errors import KernelBusy, MfcError
from ..model import FAMILY_OF_SIZE, Family, RouteKey
from .change import VifId
from .port import KernelPort
from .sockets import TableId
from .table import Table

log = logging.getLogger(__name__)


def _nothing(table: Table) -> None:
    pass


class KernelTables:
    def __init__(self, kernel: KernelPort) -> None:
        self._kernel = kernel
        self._tables: dict[TableId, Table] = {}
        self.families: tuple[Family, ...] = ()  # families whose table 0 is open
        self.on_open: Callable[[Table], None] = _nothing  # told of every socket opened

    def __iter__(self) -> Iterator[Table]:
        return iter(self._tables.values())

    def get(self, family: Family, number: int) -> Table:
        """The table, created (not opened) when it is new."""
        found = self._tables.get((family, number))
        if found is None:
            found = self._tables[(family, number)] = Table(family, number)
        return found

    def find(self, family: Family, number: int) -> Table | None:
        return self._tables.get((family, number))

    def of(self, key: RouteKey) -> Table:
        """The table of a configured route (it exists from the route's first change)."""
        return self._tables[(key.family, key.table)]

    def matching(self, family: Family | None, number: int | None) -> Iterator[Table]:
        """The tables of a family and table id (None: any)."""
        for table in list(self._tables.values()):
            if (family is None or table.family is family) and (
                number is None or table.table == number
            ):
                yield table

    def open(self, table: Table) -> bool:
        """Open the table's kernel socket if it is not open; False if the kernel refused
        (the reason is kept in table.error and logged once)."""
        if table.sock is not None:
            return True
        try:
            sock = self._kernel.open_table(table.family, table.table)
        except MfcError as exc:
            if table.error is None or str(table.error) != str(exc):
                log.warning("%s: %s", table.describe, exc)
            table.error = exc
            return False
        table.sock = sock
        table.error = None
        table.pim = True  # unknown on an adopted socket: set below
        watch_moves(table)
        self.on_open(table)
        return True

    def ready(self, table: Table) -> None:
        """Open the table, or raise why it cannot be used (KernelBusy, FamilyUnavailable)."""
        if table.sock is None:
            if not self.open(table):
                assert table.error is not None
                raise table.error
            if table.table == 0:
                self.update_families()

    def prepare(
        self, keys: Iterable[RouteKey], vifs: Iterable[VifId], strict: bool
    ) -> dict[TableId, Table]:
        """The tables a change touches, opened; strict: raise if one cannot be used."""
        ids = {(FAMILY_OF_SIZE[size], number) for size, number in
               {(len(key.sg[1]), key.table) for key in keys}}  # fmt: skip
        ids.update((family, number) for family, number, _ in vifs)
        tables = {tid: self.get(*tid) for tid in ids}
        for table in tables.values():
            if strict:
                self.ready(table)
            else:
                self.open(table)
        return tables

    def reopen_busy(self) -> list[Table]:
        """Try again the tables another router held; the ones that opened now."""
        opened = [
            table
            for table in list(self._tables.values())
            if table.sock is None and isinstance(table.error, KernelBusy) and self.open(table)
        ]
        self.update_families()
        return opened

    def update_families(self) -> None:
        self.families = tuple(
            f for f in Family if (t := self._tables.get((f, 0))) is not None and t.sock
        )

    def close(self) -> None:
        """Close every socket, which empties the kernel's tables."""
        for table in self._tables.values():
            if table.sock is not None:
                table.sock.close()
                table.sock = None
                table.live.clear()
                table.live_vifs.clear()
                table.mfc.clear()
                table.learned.clear()


def watch_moves(table: Table) -> None:
    """WRONGVIF upcalls, to move learned flows: for a flow arriving on one of its
    outputs always (assert mode), and on any VIF while the table has templates (PIM
    mode), so that a source moving to another template's input is followed."""
    want = bool(table.templates)
    if table.sock is None or table.pim == want:
        return
    try:
        table.sock.set_pim(want)
        if not want:
            table.sock.set_assert(True)  # turning PIM mode off turned it off too
        table.pim = want
    except MfcError as exc:
        log.warning("%s: WRONGVIF upcalls %s: %s", table.describe,
                    "only for outputs" if want else "not set", exc)  # fmt: skip
