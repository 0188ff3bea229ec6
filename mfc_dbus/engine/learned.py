"""Learned flows: the exact (S,G) entries installed on the kernel's upcalls for the
(*,G) and prefix routes (templates), moved when a flow arrives on another template's
input, and dropped when idle.

A flow no template covers is installed with no outputs, so that the kernel stops
asking about it; it is never reported as a route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..errors import MfcError
from ..kernel import Upcall
from ..model import Route, format_address
from .change import Change
from .events import FlowLearned, RouteRemoved
from .status import learned_route
from .table import SG, Learned, Table
from .undo import put_or_pop

log = logging.getLogger(__name__)


def addresses(sg: SG) -> tuple[str, str]:
    """A packed (S, G) as text, for messages."""
    return format_address(sg[0]), format_address(sg[1])


class Flows:
    def __init__(self, clock: Callable[[], float], expiry: float) -> None:
        self._clock = clock
        self.expiry = expiry  # seconds without a packet forwarded

    def learn(
        self,
        table: Table,
        sg: SG,
        template: Route | None,
        arrival: str,
        change: Change,
        *,
        force: bool = False,
    ) -> None:
        """Make `sg` a flow of `template` (None: of nobody) arriving on `arrival`, and
        install its entry (force: even if the same entry is installed, which makes the
        kernel forward the packets it queued for the flow)."""
        learned = Learned(template, arrival, self._clock())
        self._set(table, sg, learned, change)
        want = table.want(learned.input, learned.outputs)
        table.set_entry(sg, want, change.undo, change.strict, force)

    def on_nocache(self, table: Table, upcall: Upcall, arrival: str, change: Change) -> None:
        """A packet of a flow with no entry: learn it from the best template and install
        it at once (the kernel then forwards the packets it queued)."""
        template = table.templates.best(upcall.source, upcall.group, arrival)
        sg = (upcall.source, upcall.group)
        self.learn(table, sg, template, arrival, change, force=True)

    def on_wrongvif(self, table: Table, upcall: Upcall, arrival: str, change: Change) -> None:
        """A learned flow arrived on another interface: move it if a template takes it
        from there."""
        sg = (upcall.source, upcall.group)
        learned = table.learned.get(sg)
        if learned is None or learned.input == arrival:
            return
        template = table.templates.accepting(upcall.source, upcall.group, arrival)
        if template is None:
            return
        log.info(
            "%s: flow (%s, %s) moved from %s to %s (template %s)",
            table.describe, *addresses(sg), learned.input, arrival, template.key,
        )  # fmt: skip
        self.learn(table, sg, template, arrival, change)

    def drop(self, table: Table, sg: SG, change: Change, *, kernel: bool = True) -> None:
        """Forget a learned flow; kernel: remove its entry too (else a configured route
        takes the entry over)."""
        learned = table.learned.pop(sg)
        change.undo.push(put_or_pop, table.learned, sg, learned)
        if kernel:
            table.set_entry(sg, None, change.undo, change.strict)
        if learned.template is not None:
            change.report(RouteRemoved(learned_route(table, sg, learned)))

    def rematch(self, table: Table, change: Change) -> None:
        """The templates changed: give every learned flow its (new) template."""
        for sg, learned in list(table.learned.items()):
            best = table.templates.best(*sg, learned.arrival)
            if best is learned.template:
                continue
            if best is None and learned.template is not None:
                self.drop(table, sg, change)
                continue
            self.learn(table, sg, best, learned.arrival, change)

    def forget_interface(self, table: Table, name: str, change: Change) -> None:
        """`name` loses its VIF: drop the flows it is the input of."""
        for sg, learned in list(table.learned.items()):
            if learned.input == name:
                self.drop(table, sg, change)
            elif learned.arrival == name:
                learned.arrival = learned.input

    def drop_all(self, tables: Iterable[Table], change: Change) -> int:
        """Forget every flow learned in `tables` (after a topology change: each is
        learned again from its template when its next packet arrives); how many."""
        dropped = 0
        for table in tables:
            for sg in list(table.learned):
                self.drop(table, sg, change)
                dropped += 1
        return dropped

    def expire(self, tables: Iterable[Table], change: Change) -> int:
        """Drop the flows that forwarded nothing for `expiry` seconds; how many.

        Activity is packets - wrong_if: the kernel counts a packet arriving on a wrong
        interface in both, and such packets alone must not keep a flow alive."""
        now = self._clock()
        expired = 0
        for table in tables:
            for sg, learned in list(table.learned.items()):
                if self._active(table, sg, learned, now):
                    continue
                if now - learned.last_change >= self.expiry:
                    self.drop(table, sg, change)
                    expired += 1
        return expired

    @staticmethod
    def _active(table: Table, sg: SG, learned: Learned, now: float) -> bool:
        """Whether the flow forwarded packets since it was last looked at."""
        if table.sock is None or sg not in table.mfc:
            return False
        try:
            counters = table.sock.sg_counters(sg[0], sg[1])
            packets = counters.packets - counters.wrong_if
        except MfcError:
            packets = learned.last_packets
        if packets == learned.last_packets:
            return False
        learned.last_packets = packets
        learned.last_change = now
        return True

    def _set(self, table: Table, sg: SG, learned: Learned, change: Change) -> None:
        old = table.learned.get(sg)
        table.learned[sg] = learned
        change.undo.push(put_or_pop, table.learned, sg, old)
        if learned.template is not None:
            change.report(FlowLearned(table, sg, learned))
        elif old is not None and old.template is not None:
            change.report(RouteRemoved(learned_route(table, sg, old)))
