"""What the service sends after a change: its audit lines, its signals, and
PropertiesChanged for the counts.

A call's reply leaves first: what its change queued is sent after the replies to
every call served in the same loop turn (a caller is not held up behind other
callers' signals when many call at once). The dispatcher holds the queue while it
serves the calls read together and sends it when it is done (`hold`, `release`):
one loop turn per call less than a drain scheduled for the next turn. Changes the
engine makes on its own (upcalls, expiry, hotplug, leases, Reload by SIGHUP), and
calls answered after polkit's, are sent in the next loop turn. Signal
bodies are built from the contract (convert.Wire): the XML's arguments, in its order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType, Variant

from ..contract import Contract
from ..gcpause import gc_paused_if_many
from ..names import DBUS_PROPERTIES_INTERFACE, OBJECT_PATH
from .audit import call_line
from .audit import enabled as audit_enabled
from .auth import Call
from .convert import Wire
from .outbox import Outbox

# PropertiesChanged for the counts at most this often (s), always with the latest values:
# a stream of single-route calls would otherwise send one per call.
PROPERTIES_INTERVAL = 0.1

log = logging.getLogger("mfc_dbus.service")

AuditText = str | Callable[[], str]


class Emitter:
    def __init__(
        self, contract: Contract, wire: Wire, counts: Callable[[], dict[str, int]]
    ) -> None:
        self._interface = contract.interface
        self._signatures = {name: spec.signature for name, spec in contract.signals.items()}
        self._property_types = {name: p.signature for name, p in contract.properties.items()}
        self._wire = wire
        self._counts = counts  # the properties that PropertiesChanged reports
        self._emitted = counts()
        unknown = set(self._emitted) - set(self._property_types)
        if unknown:
            raise TypeError(f"PropertiesChanged: the contract has no property {sorted(unknown)}")
        self._outbox: Outbox | None = None  # None while the bus is away
        self._drain_scheduled = False  # something is queued; a drain will send it
        self._held = False  # the dispatcher is serving calls: it drains when done
        self._properties_sent = -PROPERTIES_INTERVAL  # monotonic time of the last one
        self._properties_timer: asyncio.TimerHandle | None = None
        self._signals: list[tuple[str, Any]] = []
        self._audit_lines: list[tuple[Call, AuditText]] = []

    def attach(self, outbox: Outbox | None) -> None:
        """Send on this connection from now on (None: the bus is away; signals wait)."""
        self._outbox = outbox
        if outbox is not None and self._signals:
            self._schedule_drain()

    def signal(self, member: str, value: Any) -> None:
        """Queue signal `member` for the engine's value (its body is built when sent)."""
        self._signals.append((member, value))
        self._schedule_drain()

    def audit(self, call: Call, what: AuditText) -> None:
        """Queue one audit line; `what` may be a function, called only when it is written."""
        if audit_enabled():
            self._audit_lines.append((call, what))
            self._schedule_drain()

    def hold(self) -> None:
        """Queue without scheduling a drain until `release`."""
        self._held = True

    def release(self) -> None:
        """Send what was queued since `hold` (and anything already waiting) now."""
        self._held = False
        self._scheduled_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            if not self._held:
                asyncio.get_running_loop().call_soon(self._scheduled_drain)

    def _scheduled_drain(self) -> None:
        if self._drain_scheduled:  # not yet sent by `release`
            self._drain_scheduled = False
            self.drain()

    def drain(self) -> None:
        """Write the queued audit lines, then send the queued signals in order, then
        PropertiesChanged if the counts moved (at once, or at the end of the
        PROPERTIES_INTERVAL since the last one). Also called at shutdown. While the
        bus is away the signals wait for the next connection."""
        lines, self._audit_lines = self._audit_lines, []
        for call, what in lines:
            call_line(call.uid, call.sender, call.member, what() if callable(what) else what)
        outbox = self._outbox
        if outbox is None:
            return
        signals, self._signals = self._signals, []
        with gc_paused_if_many(len(signals)):
            self._send_signals(outbox, signals)
        # The event loop's clock, read without asking for the loop: in CPython 3.11
        # every get_running_loop() is a getpid() system call.
        wait = self._properties_sent + PROPERTIES_INTERVAL - time.monotonic()
        if wait <= 0:
            self._send_properties()
        elif self._properties_timer is None:
            loop = asyncio.get_running_loop()
            self._properties_timer = loop.call_later(wait, self._send_properties)

    def _send_properties(self) -> None:
        """PropertiesChanged with the counts that moved since the last one."""
        self._properties_timer = None
        outbox = self._outbox
        if outbox is None:
            return
        changed = {
            name: value for name, value in self._counts().items() if self._emitted[name] != value
        }
        if changed:
            self._emitted.update(changed)
            self._properties_sent = time.monotonic()
            types = self._property_types
            body = [self._interface, {k: Variant(types[k], v) for k, v in changed.items()}, []]
            outbox.send(_signal(DBUS_PROPERTIES_INTERFACE, "PropertiesChanged", "sa{sv}as", body))

    def _send_signals(self, outbox: Outbox, signals: list[tuple[str, Any]]) -> None:
        interface, signatures, body_of = self._interface, self._signatures, self._wire.signal_body
        for member, value in signals:
            try:
                body = body_of(member, value)
                outbox.send(_signal(interface, member, signatures[member], body))
            except Exception:
                log.exception("cannot emit %s for %r", member, value)


def _signal(interface: str, member: str, signature: str, body: list[Any]) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        path=OBJECT_PATH,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )
