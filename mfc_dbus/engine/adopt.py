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
from ..kernel.mfcdump import RawEntry
from ..model import MAX_VIFS, format_address
from .runtime import LiveVif
from .table import Table

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
                        table.describe, *map(format_address, sg))  # fmt: skip
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
