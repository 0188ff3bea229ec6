"""Adopting a kernel table that outlived the previous process (systemd's fd store).

The installed side of the table is read from the kernel instead of being written:
the VIF slots the runtime record names and the kernel still has (same interface,
same ifindex), and the MFC entries of one rtnetlink dump, translated to those slots.
The engine's usual reconcile then changes only what differs from the desired state,
so an entry that is already right is never written again and no packet waits.
Anything the record cannot explain (a VIF of an interface deleted meanwhile, an
entry through an unknown slot) is removed and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..errors import MfcError
from ..kernel.mfcdump import RawEntry, our_table_id
from ..model import MAX_VIFS, Family
from .change import Change
from .learned import Flows, addresses
from .port import KernelPort
from .runtime import LiveVif
from .sockets import TableId
from .table import SG, Table

log = logging.getLogger(__name__)


def seed_installed(
    table: Table,
    recorded: dict[int, LiveVif],
    ifindex_of: Callable[[str], int | None],
    kernel_entries: Iterable[RawEntry],
) -> tuple[int, int, int]:
    """Fill `table`'s installed side from the kernel; (VIFs kept, entries kept,
    things removed)."""
    sock = table.sock
    assert sock is not None
    kept_vifs = removed = 0
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
            kept_vifs += 1
            continue
        log.warning("%s: VIF %d is not in the runtime record (or its interface changed); "
                    "removing it", table.describe, slot)  # fmt: skip
        _quietly(sock.del_vif, slot)
        removed += 1
    slot_of = {ifindex: slot for slot, (_, ifindex, _) in table.live_vifs.items()}
    kept_entries = 0
    for _, source, group, input_, kernel_outputs, *_ in kernel_entries:
        if input_ is None:
            continue  # unresolved: packets the kernel queued; their upcall is waiting
        sg = (source, group)
        parent = slot_of.get(input_)
        outputs = {slot_of.get(oif): ttl for oif, ttl in kernel_outputs.items()}
        if parent is None or None in outputs:
            log.warning("%s: removing (%s, %s): it uses an interface with no VIF",
                        table.describe, *addresses(sg))  # fmt: skip
            _quietly(sock.del_mfc, source, group)
            removed += 1
            continue
        table.mfc[sg] = (parent, outputs)  # type: ignore[assignment]
        kept_entries += 1
    return kept_vifs, kept_entries, removed


def _quietly(action: Callable[..., None], *args: object) -> None:
    try:
        action(*args)
    except MfcError:
        pass


class Adoption:
    """The tables whose kernel socket outlived the previous process, from the moment
    their socket is adopted until the configured routes are restored."""

    def __init__(self, kernel: KernelPort, ifindex_of: Callable[[str], int | None]) -> None:
        self._kernel = kernel
        self._ifindex_of = ifindex_of
        self._recorded: dict[TableId, dict[int, LiveVif]] = {}
        self._entries: dict[Family, list[RawEntry]] = {}
        self._seeded: list[Table] = []

    def prepare(self, tables: list[TableId], recorded: dict[TableId, dict[int, LiveVif]]) -> None:
        """Before the sockets of `tables` are opened: read the kernel's entries once
        (all tables of a family come in one dump)."""
        self._recorded = recorded
        families = {family for family, _ in tables}
        try:
            self._entries = {family: self._kernel.read_entries(family) for family in families}
        except OSError as exc:  # the adopted entries are then written again, in place
            log.error("cannot read the adopted kernel tables: %s", exc)
            self._entries = {}

    def seed(self, table: Table) -> None:
        """Its socket was adopted: take the installed side from the kernel."""
        family, number = table.family, table.table
        entries = [
            e for e in self._entries.get(family, ()) if our_table_id(e[0], family) == number
        ]
        recorded = self._recorded.get((family, number), {})
        vifs, kept, removed = seed_installed(table, recorded, self._ifindex_of, entries)
        log.info("%s: adopted %d VIFs and %d MFC entries from the kernel (%d removed)",
                 table.describe, vifs, kept, removed)  # fmt: skip
        self._seeded.append(table)

    def opened(self) -> None:
        """Every adopted socket is open: the dump is not needed any more."""
        self._entries.clear()

    def settle(self, flows: Flows, change: Change) -> None:
        """After the restore: adopted entries no configured route explains become the
        learned flows of the (*,G) routes that cover them, or go; VIFs nothing needs go."""
        for table in self._seeded:
            for sg, (parent, _) in list(table.mfc.items()):
                if sg not in table.exact and sg not in table.learned:
                    _settle_entry(table, sg, table.live_vifs[parent][0], flows, change)
            allocator = table.vifs
            for name in [name for name in allocator.slots if not allocator.needed(name)]:
                table.remove_vif(name, change.undo)
                allocator.release(name, change.undo)
        self._seeded.clear()


def _settle_entry(table: Table, sg: SG, arrival: str, flows: Flows, change: Change) -> None:
    template = table.templates.best(*sg, arrival)
    if template is not None:
        flows.learn(table, sg, template, arrival, change)
        return
    if table.mfc[sg][1]:  # not one of ours ("nobody routes this" entries are)
        log.warning("%s: removing (%s, %s) from the adopted table: no route covers it "
                    "(added by another tool?)", table.describe, *addresses(sg))  # fmt: skip
    table.set_entry(sg, None, change.undo, change.strict)
