"""One (family, kernel table): its desired VIFs, templates, learned flows, and what is
installed in the kernel through its multicast-routing socket.

The installed side (`live` VIFs and `mfc` entries) is only changed together with the
kernel, through the methods below, each recording its inverse in a Journal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import MfcError, NoSuchInterface, NotFound
from ..kernel import MrouteSocket
from ..model import Family, Route, RouteKey, format_address
from .templates import TemplateIndex
from .undo import UndoLog as Journal
from .vifs import VifAllocator

log = logging.getLogger(__name__)

SG = tuple[bytes, bytes]  # packed (source, group): RouteKey.sg
Entry = tuple[int, dict[int, int]]  # (input VIF, {output VIF: TTL threshold})
Shape = tuple[str, tuple[str, ...]]  # a route's (input, outputs)

# Distinct (input, outputs) whose MFC entry and missing interfaces Table keeps: routes
# share a few, so each entry is one shared object (not one per route) and a batch's
# hot loop is one dict lookup per route. A batch of 10,000 routes with it: 43 ms of CPU
# and 269 bytes held per route; without: 57-65 ms and 549 bytes. Past the bound (a
# caller inventing shapes) the memo starts again.
SHAPE_MEMO_LIMIT = 4096


@dataclass(slots=True)
class Learned:
    """An exact (S,G) the engine installed on an upcall.

    `template` is the (*,G)/prefix route it was made from, or None for an entry with no
    outputs installed so that the kernel stops asking about a flow nobody routes.
    """

    template: Route | None
    arrival: str  # the interface the flow was last seen arriving on
    last_change: float
    last_packets: int = -1
    route: Route | None = field(default=None, compare=False)  # cached for read-back

    @property
    def input(self) -> str:
        return self.template.input if self.template is not None else self.arrival

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.template.outputs if self.template is not None else ()


class Table:
    def __init__(self, family: Family, table: int) -> None:
        self.family = family
        self.table = table
        self.describe = f"{family} table {table}"
        self.vifs = VifAllocator(self.describe)
        self.templates = TemplateIndex()
        self.exact: dict[SG, RouteKey] = {}  # configured exact routes of this table
        self.learned: dict[SG, Learned] = {}
        # Installed state.
        self.sock: MrouteSocket | None = None
        self.error: MfcError | None = None  # why the socket could not be opened
        self.pim = False  # PIM mode set on sock (see tables.watch_moves)
        self.live: dict[str, int] = {}  # interface name -> VIF slot installed in the kernel
        self.live_vifs: dict[int, tuple[str, int, int]] = {}  # slot -> (name, ifindex, ttl)
        self.mfc: dict[SG, Entry] = {}
        self._v6 = family is Family.IPV6
        self._shapes: dict[Shape, tuple[Entry | None, tuple[str, ...]]] = {}  # see _shape()
        self.live_version = 0  # counts changes of the live VIFs (for the runtime record)

    # -- desired -> installed ---------------------------------------------------------
    def want(self, input: str, outputs: tuple[str, ...]) -> Entry | None:
        """The MFC entry for a flow with these interfaces, given the live VIFs: None when
        the input has no VIF; outputs without a VIF are left out. Entries are shared
        (kept until the live VIFs change): never modify one."""
        try:  # the hot path of a batch: one lookup
            return self._shapes[(input, outputs)][0]
        except KeyError:
            return self._shape(input, outputs)[0]

    def missing(self, input: str, outputs: tuple[str, ...]) -> tuple[str, ...]:
        """The interfaces of a route that have no live VIF."""
        return self._shape(input, outputs)[1]

    def _shape(self, input: str, outputs: tuple[str, ...]) -> tuple[Entry | None, tuple[str, ...]]:
        """(want, missing) of these interfaces, from the memo or made and kept."""
        shape = (input, outputs)
        found = self._shapes.get(shape)
        if found is not None:
            return found
        live = self.live
        parent = live.get(input)
        entry: Entry | None = None
        if parent is not None:
            outs: dict[int, int] = {}
            for name in outputs:
                slot = live.get(name)
                if slot is not None:
                    outs[slot] = 1 if self._v6 else self.live_vifs[slot][2]
            entry = (parent, outs)
        missing = tuple(name for name in (input, *outputs) if name not in live)
        if len(self._shapes) >= SHAPE_MEMO_LIMIT:
            self._shapes.clear()
        found = self._shapes[shape] = (entry, missing)
        return found

    # -- VIFs ------------------------------------------------------------------------------
    def install_vif(self, name: str, ifindex: int, journal: Journal, strict: bool) -> bool:
        """Add the VIF of `name` (which holds a slot) on `ifindex`; False if the interface
        vanished meanwhile. Other kernel errors raise when strict, else are logged."""
        slot = self.vifs.slots[name]
        threshold = self.vifs.threshold(name)
        assert self.sock is not None
        try:
            self.sock.add_vif(slot, ifindex, threshold)
        except NoSuchInterface:
            return False
        except MfcError as exc:
            if strict:
                raise
            log.error("%s: cannot add VIF %d for %s: %s", self.describe, slot, name, exc)
            return False
        self._bind_live(name, slot, ifindex, threshold)
        journal.push(self._undo_install, name, slot)
        return True

    def remove_vif(self, name: str, journal: Journal) -> None:
        """Delete the live VIF of `name` (already gone from the kernel is fine)."""
        slot = self.live.get(name)
        if slot is None:
            return
        _, ifindex, threshold = self.live_vifs[slot]
        if self.sock is not None:
            try:
                self.sock.del_vif(slot)
            except MfcError:  # the kernel drops a VIF itself when its device goes
                pass
        self._unbind_live(name, slot)
        journal.push(self._undo_remove, name, slot, ifindex, threshold)

    def forget_vif(self, name: str) -> None:
        """The kernel removed the VIF (its device was deleted): record that."""
        slot = self.live.get(name)
        if slot is not None:
            if self.sock is not None:
                try:
                    self.sock.del_vif(slot)
                except MfcError:
                    pass
            self._unbind_live(name, slot)

    def bind_live(self, name: str, slot: int, ifindex: int, threshold: int) -> None:
        """Record a VIF the kernel already has (adopting a table)."""
        self._bind_live(name, slot, ifindex, threshold)

    def _bind_live(self, name: str, slot: int, ifindex: int, threshold: int) -> None:
        self.live[name] = slot
        self.live_vifs[slot] = (name, ifindex, threshold)
        self._live_changed()

    def _unbind_live(self, name: str, slot: int) -> None:
        del self.live[name]
        del self.live_vifs[slot]
        self._live_changed()

    def _live_changed(self) -> None:
        self.live_version += 1
        self._shapes.clear()

    def _undo_install(self, name: str, slot: int) -> None:
        if self.live.get(name) == slot:
            assert self.sock is not None  # undone while the socket that made it is open
            self.sock.del_vif(slot)
            self._unbind_live(name, slot)

    def _undo_remove(self, name: str, slot: int, ifindex: int, threshold: int) -> None:
        assert self.sock is not None
        self.sock.add_vif(slot, ifindex, threshold)
        self._bind_live(name, slot, ifindex, threshold)

    # -- MFC entries ---------------------------------------------------------------------
    def set_entry(
        self, sg: SG, want: Entry | None, journal: Journal, strict: bool, force: bool = False
    ) -> None:
        self.set_entries(((sg, want),), journal, strict, force)

    def set_entries(
        self,
        entries: Iterable[tuple[SG, Entry | None]],
        journal: Journal,
        strict: bool,
        force: bool = False,
    ) -> None:
        """Install (or, for None, remove) MFC entries, with one undo step for all: the
        hot loop of a batch. An entry already installed is rewritten only when forced.
        Kernel errors raise when strict, else are logged and the entry left out."""
        if self.sock is None:  # the table is not ours (KernelBusy): nothing installed
            return
        mfc, add_mfc = self.mfc, self.sock.add_mfc
        undo: list[tuple[SG, Entry | None]] = []
        journal.push(self._restore_entries, undo)
        for sg, want in entries:
            have = mfc.get(sg)
            if want == have and not force:
                continue
            try:
                if want is None:
                    self._write_entry(sg, None)
                else:
                    add_mfc(sg[0], sg[1], want[0], want[1])
                    mfc[sg] = want
            except MfcError as exc:
                if strict:
                    raise
                self._log_failure(sg, exc)
                mfc.pop(sg, None)
                continue
            undo.append((sg, have))

    def _restore_entries(self, undo: list[tuple[SG, Entry | None]]) -> None:
        for sg, have in reversed(undo):
            self._write_entry(sg, have)

    def _log_failure(self, sg: SG, exc: MfcError) -> None:
        source, group = map(format_address, sg)
        log.error("%s: cannot install (%s, %s): %s", self.describe, source, group, exc)

    def _write_entry(self, sg: SG, want: Entry | None) -> None:
        assert self.sock is not None  # called only while the table's socket is open
        if want is None:
            if sg in self.mfc:
                del self.mfc[sg]
                try:
                    self.sock.del_mfc(sg[0], sg[1])
                except NotFound:  # already gone (the kernel never had it): fine
                    pass
        else:
            self.sock.add_mfc(sg[0], sg[1], want[0], want[1])
            self.mfc[sg] = want

    # -- read-back ----------------------------------------------------------------------
    def kernel_view(self) -> dict[SG, tuple[int, dict[int, int]]]:
        """What the kernel should hold, as ifindexes: {(S, G): (input, {output: ttl})},
        addresses packed."""
        index = {slot: ifindex for slot, (_, ifindex, _) in self.live_vifs.items()}
        return {
            sg: (index[parent], {index[slot]: ttl for slot, ttl in outs.items()})
            for sg, (parent, outs) in self.mfc.items()
        }
