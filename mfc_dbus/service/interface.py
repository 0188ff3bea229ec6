"""The object /org/mfc/Forwarding1, interface org.mfc.Forwarding1: one handler per
method of the contract.

A handler validates its arguments and returns the change still to be made (a
function); the dispatcher authorizes the call in between (see dispatch.py). A read
(`@public`) returns its result directly. Signals and PropertiesChanged come from the
engine's listener calls, so changes made by upcalls, expiry, hotplug, leases and
Reload are signalled too; they, and each call's audit line, are sent after the reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType, Variant

from .. import __version__
from ..contract import Contract
from ..errors import InvalidArgument
from ..gcpause import gc_paused_if_many
from ..model import Family, Route, VifConfig, VifStatus, make_route_key
from ..model import validate_interface_name as check_ifname
from ..names import DBUS_PROPERTIES_INTERFACE, OBJECT_PATH
from . import options as opts
from .auth import Call, GuardedEngine, public
from .convert import route_from_args, route_tuple, vif_index, vif_tuple
from .leases import Leases
from .outbox import Outbox

TTL_RANGE = range(1, 256)
# PropertiesChanged for the counts at most this often (s), always with the latest values:
# a stream of single-route calls would otherwise send one per call.
PROPERTIES_INTERVAL = 0.1

audit = logging.getLogger("mfc_dbus.audit")
log = logging.getLogger("mfc_dbus.service")

Change = Callable[[], Any]


class Forwarding:
    def __init__(self, engine: Any, leases: Leases, contract: Contract) -> None:
        self._raw_engine = engine
        self._engine = GuardedEngine(engine)
        self._leases = leases
        self._interface = contract.interface
        self._signal_signatures = {name: s.signature for name, s in contract.signals.items()}
        self._outbox: Outbox | None = None  # None while the bus is away
        self._emitted = {"RouteCount": engine.route_count, "VifCount": engine.vif_count}
        self._drain_scheduled = False
        self._properties_sent = -PROPERTIES_INTERVAL  # loop time of the last one
        self._properties_timer: asyncio.TimerHandle | None = None
        self._signals: list[tuple[str, Route | VifStatus]] = []
        self._audit_lines: list[tuple[Call, str | Callable[[], str]]] = []
        engine.add_listener(self)

    def attach(self, outbox: Outbox | None) -> None:
        """Send on this connection from now on (None: the bus is away; signals wait)."""
        self._outbox = outbox
        if outbox is not None and self._signals:
            self._schedule_drain()

    # -- routes -----------------------------------------------------------------------
    def AddRoute(
        self,
        call: Call,
        source: str,
        group: str,
        input: str,
        outputs: list[str],
        options: dict[str, Variant],
    ) -> Change:
        route = route_from_args(
            source, group, input, outputs, options, sender=call.sender, where="AddRoute"
        )

        def add() -> None:
            self._engine.add_route(route, counters=False)
            self._audit(call, lambda: f"AddRoute {_describe(route)}")
            if route.owner:
                self._leases.confirm_soon(route.owner)

        return add

    def AddRoutes(self, call: Call, routes: list[Any], options: dict[str, Variant]) -> Change:
        defaults = opts.parse(options, opts.ROUTE_OPTIONS, "AddRoutes")
        with gc_paused_if_many(len(routes)):  # many objects, no cycles (gcpause.py)
            parsed = [
                route_from_args(
                    *item, sender=call.sender, where=f"AddRoutes route #{n}", defaults=defaults
                )
                for n, item in enumerate(routes)
            ]

        def add() -> int:
            count = self._engine.add_routes(parsed)
            self._audit(call, lambda: f"AddRoutes {len(parsed)} routes: {_summary(parsed)}")
            for owner in {route.owner for route in parsed if route.owner}:
                self._leases.confirm_soon(owner)
            return count

        return add

    def RemoveRoute(
        self, call: Call, source: str, group: str, options: dict[str, Variant]
    ) -> Change:
        given = opts.parse(options, opts.REMOVE_ROUTE_OPTIONS, "RemoveRoute")
        key = make_route_key(source, group, given.get("table", 0))

        def remove() -> None:
            self._engine.remove_route(key)
            self._audit(call, lambda: f"RemoveRoute {key}")

        return remove

    def Flush(self, call: Call, options: dict[str, Variant]) -> Change:
        given = opts.parse(options, opts.FLUSH_OPTIONS, "Flush")

        def flush() -> int:
            removed = self._engine.flush(given.get("family"), given.get("table"))
            self._audit(call, f"Flush {_filter_text(given)}: {len(removed)} routes removed")
            return len(removed)

        return flush

    @public
    def ListRoutes(self, call: Call, filter: dict[str, Variant]) -> list[Any]:
        given = opts.parse(filter, opts.LIST_FILTER, "ListRoutes")
        statuses = self._engine.list_routes(given.get("family"), given.get("table"))
        return [route_tuple(status) for status in statuses]

    # -- interfaces ----------------------------------------------------------------
    def AddVif(self, call: Call, interface: str, options: dict[str, Variant]) -> Change:
        given = opts.parse(options, opts.ADD_VIF_OPTIONS, "AddVif")
        ttl = given.get("ttl_threshold", 1)
        if ttl not in TTL_RANGE:
            raise InvalidArgument(f"ttl_threshold {ttl} is not valid; use 1 to 255")
        config = VifConfig(
            interface=check_ifname(interface),
            family=given.get("family", Family.IPV4),
            table=given.get("table", 0),
            ttl_threshold=ttl,
            persistent=given.get("persistent", True),
        )

        def add() -> int:
            status = self._engine.add_vif(config)
            self._audit(call, f"AddVif {interface} {config.family} table {config.table} ttl {ttl}")
            return vif_index(status)

        return add

    def RemoveVif(self, call: Call, interface: str, options: dict[str, Variant]) -> Change:
        given = opts.parse(options, opts.REMOVE_VIF_OPTIONS, "RemoveVif")
        family = given.get("family", Family.IPV4)
        table = given.get("table", 0)
        check_ifname(interface)

        def remove() -> None:
            self._engine.remove_vif(interface, family, table)
            self._audit(call, f"RemoveVif {interface} {family} table {table}")

        return remove

    @public
    def ListVifs(self, call: Call, filter: dict[str, Variant]) -> list[Any]:
        given = opts.parse(filter, opts.LIST_FILTER, "ListVifs")
        return [
            vif_tuple(vif)
            for vif in self._engine.list_vifs(given.get("family"), given.get("table"))
        ]

    def Reload(self, call: Call) -> Change:
        def reload() -> None:
            result = self._engine.reload()
            self._audit(
                call,
                f"Reload: {result.added} added, {result.removed} removed, "
                f"{result.changed} changed, {result.unchanged} unchanged",
            )

        return reload

    # -- properties ----------------------------------------------------------------
    def property_value(self, name: str) -> Any:
        engine = self._raw_engine
        if name == "Version":
            return __version__
        if name == "RouteCount":
            return engine.route_count
        if name == "VifCount":
            return engine.vif_count
        if name == "Families":
            return [family.value for family in engine.families]
        raise KeyError(name)

    # -- EngineListener ------------------------------------------------------------
    def route_added(self, route: Route) -> None:
        self._queue_signal("RouteAdded", route)
        if route.owner:
            self._leases.watch(route.owner)

    def route_removed(self, route: Route) -> None:
        self._queue_signal("RouteRemoved", route)

    def vif_added(self, vif: VifStatus) -> None:
        self._queue_signal("VifAdded", vif)

    def vif_removed(self, vif: VifStatus) -> None:
        self._queue_signal("VifRemoved", vif)

    # -- after the reply -----------------------------------------------------------
    # A call's reply is handed to the outbox before its change's audit line and
    # signals are written: they are queued here and sent in the next loop turn.
    def _queue_signal(self, member: str, value: Route | VifStatus) -> None:
        self._signals.append((member, value))  # the body is built when it is sent
        self._schedule_drain()

    def _audit(self, call: Call, what: str | Callable[[], str]) -> None:
        """Queue one audit line; `what` may be a function, called only when it is written."""
        if audit.isEnabledFor(logging.INFO):
            self._audit_lines.append((call, what))
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self.drain)

    def drain(self) -> None:
        """Write the queued audit lines, then send the queued signals in order, then
        PropertiesChanged if the counts moved (at once, or at the end of the
        PROPERTIES_INTERVAL since the last one). Also called at shutdown. While the
        bus is away the signals wait for the next connection."""
        self._drain_scheduled = False
        lines, self._audit_lines = self._audit_lines, []
        for call, what in lines:
            text = what() if callable(what) else what
            audit.info("uid=%s sender=%s %s: %s", call.uid, call.sender, call.member, text)
        outbox = self._outbox
        if outbox is None:
            return
        signals, self._signals = self._signals, []
        with gc_paused_if_many(len(signals)):
            self._send_signals(outbox, signals)
        loop = asyncio.get_running_loop()
        wait = self._properties_sent + PROPERTIES_INTERVAL - loop.time()
        if wait <= 0:
            self._send_properties()
        elif self._properties_timer is None:
            self._properties_timer = loop.call_later(wait, self._send_properties)

    def _send_properties(self) -> None:
        """PropertiesChanged with the counts that moved since the last one."""
        self._properties_timer = None
        outbox = self._outbox
        if outbox is None:
            return
        now = {"RouteCount": self._raw_engine.route_count, "VifCount": self._raw_engine.vif_count}
        changed = {name: value for name, value in now.items() if self._emitted[name] != value}
        if changed:
            self._emitted.update(changed)
            self._properties_sent = asyncio.get_running_loop().time()
            body = [self._interface, {k: Variant("u", v) for k, v in changed.items()}, []]
            outbox.send(_signal(DBUS_PROPERTIES_INTERFACE, "PropertiesChanged", "sa{sv}as", body))

    def _send_signals(self, outbox: Outbox, signals: list[tuple[str, Route | VifStatus]]) -> None:
        for member, value in signals:
            try:
                body = _SIGNAL_BODIES[member](value)
                signature = self._signal_signatures[member]
                outbox.send(_signal(self._interface, member, signature, body))
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


def _vif_body(vif: VifStatus) -> list[Any]:
    return [vif.interface, vif_index(vif), vif.family.value]


_SIGNAL_BODIES: dict[str, Callable[[Any], list[Any]]] = {
    "RouteAdded": lambda route: [*route.key.texts, route.input, list(route.outputs)],
    "RouteRemoved": lambda route: list(route.key.texts),
    "VifAdded": _vif_body,
    "VifRemoved": _vif_body,
}


def _describe(route: Route) -> str:
    flags = " lease" if route.owner else ("" if route.persistent else " transient")
    return f"{route.key} in {route.input} out {','.join(route.outputs) or '-'}{flags}"


def _summary(routes: list[Route], limit: int = 3) -> str:
    shown = "; ".join(_describe(route) for route in routes[:limit])
    return shown + (f"; ... {len(routes) - limit} more" if len(routes) > limit else "")


def _filter_text(given: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(given.items())) or "all"
