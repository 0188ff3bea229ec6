"""Adopting a kernel table that outlived the previous process (systemd's fd store).

Two steps, so that a restart is ready (READY=1) without waiting for a read-back whose
kernel time grows faster than the table (mfcdump.py):

1. Before the state is restored (`seed`): the VIF slots the runtime record names and
   the kernel still has (same interface, same ifindex) are bound, anything else in a
   slot is removed. While the saved routes are restored onto the table, its entries
   are recorded as installed without being written (`_Believed`): the kernel kept
   them, so nothing is re-added and no packet waits.
2. After start (`verify`): one rtnetlink dump, read in a worker thread, is compared
   with the table in slices on the event loop (no more than SLICE entries at a time).
   An entry that differs, or that the kernel lacks, is written again; an entry the
   restored state does not explain becomes a learned flow of the (*,G) route that
   covers it, or goes (logged). Each slice compares with the table as it is then, so
   a call served meanwhile is never undone: rewriting an entry with what the table
   holds, or deleting one it does not hold, is what the call did already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import cast

from ..errors import MfcError
from ..kernel import MrouteSocket
from ..kernel.mfcdump import RawEntry, our_table_id
from ..model import MAX_VIFS
from .change import Change
from .learned import Flows, addresses
from .port import KernelPort
from .runtime import LiveVif
from .sockets import TableId
from .table import SG, Entry, Table

log = logging.getLogger(__name__)

SLICE = 2000  # entries compared per turn of the event loop (a few ms)
LOGGED = 20  # entries named in the log per kind of difference and table; then counts


def seed_vifs(
    table: Table, recorded: dict[int, LiveVif], ifindex_of: Callable[[str], int | None]
) -> tuple[int, int]:
    """Bind the VIFs of `table` the record explains; (VIFs kept, VIFs removed)."""
    sock = table.sock
    assert sock is not None
    kept = removed = 0
    for slot in range(MAX_VIFS):
        if not sock.vif_exists(slot):
            if slot in recorded:
                log.warning("%s: the VIF of %s (slot %d) is gone: its interface was deleted "
                            "meanwhile; routes through it are pending until it returns",
                            table.describe, recorded[slot][0], slot)  # fmt: skip
            continue
        known = recorded.get(slot)
        if known is not None and ifindex_of(known[0]) == known[1]:
            name, ifindex, threshold = known
            table.vifs.bind(name, slot)
            table.bind_live(name, slot, ifindex, threshold)
            kept += 1
            continue
        log.warning("%s: VIF %d is not in the runtime record (or its interface changed); "
                    "removing it", table.describe, slot)  # fmt: skip
        _quietly(sock.del_vif, slot)
        removed += 1
    return kept, removed


def _quietly(action: Callable[..., None], *args: object) -> None:
    try:
        action(*args)
    except MfcError:
        pass


class _Believed:
    """An adopted table's socket while the saved state is restored onto it: an entry
    added is recorded by the table as installed but not written (the kernel kept it);
    everything else goes to the socket."""

    def __init__(self, sock: MrouteSocket) -> None:
        self.real = sock

    def add_mfc(self, *args: object) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


class Tally:
    """What the comparison of one table found."""

    def __init__(self) -> None:
        self.kept = self.rewritten = self.removed = 0


class Adoption:
    """The tables whose kernel socket outlived the previous process, from the moment
    their socket is adopted until the kernel's entries are verified."""

    def __init__(self, kernel: KernelPort, ifindex_of: Callable[[str], int | None]) -> None:
        self._kernel = kernel
        self._ifindex_of = ifindex_of
        self._recorded: dict[TableId, dict[int, LiveVif]] = {}
        self._tables: list[Table] = []
        self.done = asyncio.Event()  # set when every adopted table is verified
        self.done.set()

    def expect(self, recorded: dict[TableId, dict[int, LiveVif]]) -> None:
        """The live VIFs the previous process recorded, by table."""
        self._recorded = recorded

    def seed(self, table: Table) -> None:
        """Its socket was adopted: bind the VIFs, believe the entries until verified."""
        recorded = self._recorded.get((table.family, table.table), {})
        kept, removed = seed_vifs(table, recorded, self._ifindex_of)
        log.info("%s: adopted %d VIFs from the kernel (%d removed); its entries are "
                 "verified after start", table.describe, kept, removed)  # fmt: skip
        assert table.sock is not None
        table.sock = cast(MrouteSocket, _Believed(table.sock))
        self._tables.append(table)
        self.done.clear()

    def restored(self) -> None:
        """The saved state is restored: entries are written for real from now on."""
        for table in self._tables:
            if isinstance(table.sock, _Believed):
                table.sock = table.sock.real

    @property
    def pending(self) -> bool:
        return not self.done.is_set()

    async def verify(self, flows: Flows, publish: Callable[[Change], None]) -> None:
        """Compare each adopted table with the kernel's entries and mend what differs;
        then free the VIFs nothing needs. A failed read leaves the entries believed."""
        try:
            for family in sorted({table.family for table in self._tables}, key=str):
                try:
                    entries = await asyncio.to_thread(self._kernel.read_entries, family)
                except OSError as exc:
                    log.error("cannot read the adopted %s tables back: %s; their entries "
                              "are kept as the state file has them", family, exc)  # fmt: skip
                    continue
                for table in [t for t in self._tables if t.family is family]:
                    mine = [e for e in entries if our_table_id(e[0], family) == table.table]
                    await self._verify_table(table, mine, flows, publish)
        finally:
            self._tables.clear()
            self.done.set()

    async def _verify_table(
        self,
        table: Table,
        entries: list[RawEntry],
        flows: Flows,
        publish: Callable[[Change], None],
    ) -> None:
        tally = Tally()
        seen: set[SG] = set()
        for at in range(0, len(entries), SLICE):
            if table.sock is None:
                return  # closed meanwhile (the engine stopped)
            change = Change.best_effort()
            _compare(table, entries[at : at + SLICE], seen, flows, change, tally)
            publish(change)
            await asyncio.sleep(0)
        missing = [sg for sg in table.mfc if sg not in seen]
        for at in range(0, len(missing), SLICE):
            if table.sock is None:
                return
            change = Change.best_effort()
            _write_missing(table, missing[at : at + SLICE], change, tally)
            publish(change)
            await asyncio.sleep(0)
        change = Change.best_effort()
        allocator = table.vifs
        for name in [name for name in allocator.slots if not allocator.needed(name)]:
            table.remove_vif(name, change.undo)
            allocator.release(name, change.undo)
        publish(change)
        log.info("%s: adopted %d MFC entries from the kernel (%d written again, %d removed)",
                 table.describe, tally.kept, tally.rewritten, tally.removed)  # fmt: skip


def _ifindex_form(table: Table, entry: Entry) -> tuple[int | None, dict[int, int]]:
    index = table.live_vifs
    parent, outputs = entry
    owner = index.get(parent)
    return (
        owner[1] if owner is not None else None,
        {index[slot][1]: ttl for slot, ttl in outputs.items() if slot in index},
    )


def _compare(
    table: Table,
    entries: Iterable[RawEntry],
    seen: set[SG],
    flows: Flows,
    change: Change,
    tally: Tally,
) -> None:
    """One slice of the kernel's entries against the table as it is now."""
    forms: dict[int, tuple[Entry, tuple[int | None, dict[int, int]]]] = {}  # shared entries
    slot_of = {ifindex: slot for slot, (_, ifindex, _) in table.live_vifs.items()}
    for _, source, group, input_, outputs, *_ in entries:
        if input_ is None:
            continue  # unresolved: packets the kernel queued; their upcall is waiting
        sg = (source, group)
        seen.add(sg)
        have = table.mfc.get(sg)
        if have is not None:
            known = forms.get(id(have))
            if known is None:
                known = forms[id(have)] = (have, _ifindex_form(table, have))
            if known[1] == (input_, outputs):
                tally.kept += 1
            else:
                if tally.rewritten < LOGGED:
                    log.warning("%s: (%s, %s) differs in the kernel; writing it again",
                                table.describe, *addresses(sg))  # fmt: skip
                table.set_entry(sg, have, change.undo, change.strict, force=True)
                tally.rewritten += 1
            continue
        parent = slot_of.get(input_)
        slots = {slot_of.get(oif): ttl for oif, ttl in outputs.items()}
        if parent is None or None in slots:
            if tally.removed < LOGGED:
                log.warning("%s: removing (%s, %s): it uses an interface with no VIF",
                            table.describe, *addresses(sg))  # fmt: skip
            assert table.sock is not None
            _quietly(table.sock.del_mfc, source, group)
            tally.removed += 1
            continue
        table.mfc[sg] = (parent, slots)  # type: ignore[assignment]
        if not _settle_entry(table, sg, table.live_vifs[parent][0], flows, change):
            tally.removed += 1
        else:
            tally.kept += 1


def _write_missing(table: Table, missing: list[SG], change: Change, tally: Tally) -> None:
    """Entries the table holds and the dump did not: written (again, if a call or an
    upcall wrote them after the dump: the same entry, in place)."""
    for sg in missing:
        have = table.mfc.get(sg)
        if have is not None:
            table.set_entry(sg, have, change.undo, change.strict, force=True)
            tally.rewritten += 1


def _settle_entry(table: Table, sg: SG, arrival: str, flows: Flows, change: Change) -> bool:
    """An adopted entry the restored state does not explain: a learned flow of the
    (*,G) route that covers it (True), or removed (False)."""
    template = table.templates.best(*sg, arrival)
    if template is not None:
        flows.learn(table, sg, template, arrival, change)
        return True
    if table.mfc[sg][1]:  # not one of ours ("nobody routes this" entries are)
        log.warning("%s: removing (%s, %s) from the adopted table: no route covers it "
                    "(added by another tool?)", table.describe, *addresses(sg))  # fmt: skip
    table.set_entry(sg, None, change.undo, change.strict)
    return False
