"""The exported object /org/mfc/Forwarding1, interface org.mfc.Forwarding1.

Every mutating handler runs in the same order: validate -> authorize -> engine ->
audit -> reply. Signals and PropertiesChanged come from the engine's listener calls,
so changes made by upcalls, expiry, hotplug, leases and Reload are signalled too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any

from dbus_fast import Message, MessageType
from dbus_fast.annotations import DBusDict, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal
from dbus_fast.signature import get_signature_tree

from .. import __version__
from ..errors import InvalidArgument
from ..gcpause import gc_paused_if_many
from ..model import Family, Route, VifConfig, VifStatus, make_route_key
from ..model import validate_interface_name as check_ifname
from ..names import ACTION_MANAGE_INTERFACES as ACTION_INTERFACES
from ..names import ACTION_MANAGE_ROUTES as ACTION_ROUTES
from ..names import INTERFACE, OBJECT_PATH
from . import options as opts
from .auth import (
    ACTION_MARK,
    AuthorizedInterface,
    Authorizer,
    Call,
    GuardedEngine,
    authorize,
    exported_methods,
    public,
    requires,
)
from .context import current_message
from .convert import route_from_args, route_tuple, vif_index, vif_tuple
from .leases import Leases
from .writer import send_queued_now

StrList = Annotated[list[str], DBusSignature("as")]
RouteIn = Annotated[list[Any], DBusSignature("a(sssasa{sv})")]
RoutesOut = Annotated[list[Any], DBusSignature("a(sssasa{sv})")]
VifsOut = Annotated[list[Any], DBusSignature("a(sua{sv})")]
NoReply = Annotated[None, DBusSignature("")]

# Names of output arguments (dbus-fast leaves them unnamed) and the annotation that
# publishes each method's polkit action in the live introspection.
OUT_ARG_NAMES = {"AddRoutes": ["count"], "Flush": ["removed"], "AddVif": ["index"],
                 "ListRoutes": ["routes"], "ListVifs": ["vifs"]}  # fmt: skip
POLKIT_ANNOTATION = "org.mfc.Forwarding1.PolkitAction"
CHANGED_ANNOTATION = "org.freedesktop.DBus.Property.EmitsChangedSignal"
CONST_PROPERTIES = ("Version", "Families")
TTL_RANGE = range(1, 256)
# PropertiesChanged for the counts at most this often (s), always with the latest values:
# a stream of single-route calls would otherwise send one per call.
PROPERTIES_INTERVAL = 0.1

audit = logging.getLogger("mfc_dbus.audit")
log = logging.getLogger("mfc_dbus.service")


class Forwarding(AuthorizedInterface):
    def __init__(self, engine: Any, authorizer: Authorizer, leases: Leases) -> None:
        super().__init__(INTERFACE)
        _complete_introspection(self)
        self._raw_engine = engine
        self._engine = GuardedEngine(engine)
        self._authorizer = authorizer
        self._leases = leases
        self._emitted = {"RouteCount": engine.route_count, "VifCount": engine.vif_count}
        self._after_reply_scheduled = False
        self._properties_sent = -PROPERTIES_INTERVAL  # loop time of the last one
        self._properties_timer: asyncio.TimerHandle | None = None
        self._signals: list[tuple[str, Route | VifStatus]] = []
        self._audit_lines: list[tuple[Call, str | Callable[[], str]]] = []
        self._signal_signatures = {
            signal.name: get_signature_tree(signal.signature)
            for signal in ServiceInterface._get_signals(self)
        }
        engine.add_listener(self)

    # -- routes -----------------------------------------------------------------------
    @dbus_method()
    @requires(ACTION_ROUTES)
    async def AddRoute(
        self, source: DBusStr, group: DBusStr, input: DBusStr, outputs: StrList, options: DBusDict
    ) -> NoReply:
        sender = _sender()
        route = route_from_args(
            source, group, input, outputs, options, sender=sender, where="AddRoute"
        )
        call = await authorize(self._authorizer)
        self._engine.add_route(route, counters=False)
        self._audit(call, lambda: f"AddRoute {_describe(route)}")
        if route.owner:
            await self._leases.confirm(route.owner)

    @dbus_method()
    @requires(ACTION_ROUTES)
    async def AddRoutes(self, routes: RouteIn, options: DBusDict) -> DBusUInt32:
        sender = _sender()
        defaults = opts.parse(options, opts.ROUTE_OPTIONS, "AddRoutes")
        with gc_paused_if_many(len(routes)):  # many objects, no cycles (gcpause.py)
            parsed = [
                route_from_args(
                    *item, sender=sender, where=f"AddRoutes route #{n}", defaults=defaults
                )
                for n, item in enumerate(routes)
            ]
        call = await authorize(self._authorizer)
        count = self._engine.add_routes(parsed)
        self._audit(call, lambda: f"AddRoutes {len(parsed)} routes: {_summary(parsed)}")
        for owner in {route.owner for route in parsed if route.owner}:
            await self._leases.confirm(owner)
        return count

    @dbus_method()
    @requires(ACTION_ROUTES)
    async def RemoveRoute(self, source: DBusStr, group: DBusStr, options: DBusDict) -> NoReply:
        given = opts.parse(options, opts.REMOVE_ROUTE_OPTIONS, "RemoveRoute")
        key = make_route_key(source, group, given.get("table", 0))
        call = await authorize(self._authorizer)
        self._engine.remove_route(key)
        self._audit(call, lambda: f"RemoveRoute {key}")

    @dbus_method()
    @requires(ACTION_ROUTES)
    async def Flush(self, options: DBusDict) -> DBusUInt32:
        given = opts.parse(options, opts.FLUSH_OPTIONS, "Flush")
        call = await authorize(self._authorizer)
        removed = self._engine.flush(given.get("family"), given.get("table"))
        self._audit(call, f"Flush {_filter_text(given)}: {len(removed)} routes removed")
        return len(removed)

    @dbus_method()
    @public
    def ListRoutes(self, filter: DBusDict) -> RoutesOut:
        given = opts.parse(filter, opts.LIST_FILTER, "ListRoutes")
        statuses = self._engine.list_routes(given.get("family"), given.get("table"))
        return [route_tuple(status) for status in statuses]

    # -- interfaces ----------------------------------------------------------------
    @dbus_method()
    @requires(ACTION_INTERFACES)
    async def AddVif(self, interface: DBusStr, options: DBusDict) -> DBusUInt32:
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
        call = await authorize(self._authorizer)
        status = self._engine.add_vif(config)
        self._audit(call, f"AddVif {interface} {config.family} table {config.table} ttl {ttl}")
        return vif_index(status)

    @dbus_method()
    @requires(ACTION_INTERFACES)
    async def RemoveVif(self, interface: DBusStr, options: DBusDict) -> NoReply:
        given = opts.parse(options, opts.REMOVE_VIF_OPTIONS, "RemoveVif")
        family = given.get("family", Family.IPV4)
        check_ifname(interface)
        call = await authorize(self._authorizer)
        self._engine.remove_vif(interface, family, given.get("table", 0))
        self._audit(call, f"RemoveVif {interface} {family} table {given.get('table', 0)}")

    @dbus_method()
    @public
    def ListVifs(self, filter: DBusDict) -> VifsOut:
        given = opts.parse(filter, opts.LIST_FILTER, "ListVifs")
        return [vif_tuple(vif) for vif in self._engine.list_vifs(given.get("family"),
                                                                  given.get("table"))]  # fmt: skip

    @dbus_method()
    @requires(ACTION_ROUTES)
    async def Reload(self) -> NoReply:
        call = await authorize(self._authorizer)
        result = self._engine.reload()
        self._audit(
            call,
            f"Reload: {result.added} added, {result.removed} removed, "
            f"{result.changed} changed, {result.unchanged} unchanged",
        )

    # -- signals -------------------------------------------------------------------
    @dbus_signal()
    def RouteAdded(
        self, source: str, group: str, input: str, outputs: list[str]
    ) -> Annotated[list[Any], DBusSignature("sssas")]:
        return [source, group, input, outputs]

    @dbus_signal()
    def RouteRemoved(self, source: str, group: str) -> Annotated[list[Any], DBusSignature("ss")]:
        return [source, group]

    @dbus_signal()
    def VifAdded(
        self, interface: str, index: int, family: str
    ) -> Annotated[list[Any], DBusSignature("sus")]:
        return [interface, index, family]

    @dbus_signal()
    def VifRemoved(
        self, interface: str, index: int, family: str
    ) -> Annotated[list[Any], DBusSignature("sus")]:
        return [interface, index, family]

    # -- properties ----------------------------------------------------------------
    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> DBusStr:
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def RouteCount(self) -> DBusUInt32:
        return self._raw_engine.route_count

    @dbus_property(access=PropertyAccess.READ)
    def VifCount(self) -> DBusUInt32:
        return self._raw_engine.vif_count

    @dbus_property(access=PropertyAccess.READ)
    def Families(self) -> StrList:
        return [family.value for family in self._raw_engine.families]

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
    # A call's audit lines and signals are queued and handled two loop turns later: by
    # then dbus-fast has queued the call's reply, which is written out first. The caller
    # goes on while the service writes the audit line and builds the signals.
    def _queue_signal(self, member: str, value: Route | VifStatus) -> None:
        self._signals.append((member, value))  # the body is built when it is sent
        self._schedule_after_reply()

    def _audit(self, call: Call, what: str | Callable[[], str]) -> None:
        """Queue one audit line; `what` may be a function, called only when it is written."""
        if audit.isEnabledFor(logging.INFO):
            self._audit_lines.append((call, what))
            self._schedule_after_reply()

    def _schedule_after_reply(self) -> None:
        if not self._after_reply_scheduled:
            self._after_reply_scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self.drain)

    def drain(self) -> None:
        """Write out the queued replies, then the queued audit lines, then the queued
        signals in order, then PropertiesChanged if the counts moved (at once, or at the
        end of the PROPERTIES_INTERVAL since the last one). Also called at shutdown."""
        self._after_reply_scheduled = False
        buses = ServiceInterface._get_buses(self)
        for bus in buses:
            send_queued_now(bus)  # the replies of the calls that caused what follows
        lines, self._audit_lines = self._audit_lines, []
        for call, what in lines:
            text = what() if callable(what) else what
            audit.info("uid=%s sender=%s %s: %s", call.uid, call.message.sender, call.member, text)
        signals, self._signals = self._signals, []
        with gc_paused_if_many(len(signals)):
            self._send_signals(buses, signals)
        loop = asyncio.get_running_loop()
        wait = self._properties_sent + PROPERTIES_INTERVAL - loop.time()
        if wait <= 0:
            self._send_properties()
        elif self._properties_timer is None:
            self._properties_timer = loop.call_later(wait, self._send_properties)

    def _send_properties(self) -> None:
        """PropertiesChanged with the counts that moved since the last one."""
        self._properties_timer = None
        now = {"RouteCount": self._raw_engine.route_count, "VifCount": self._raw_engine.vif_count}
        changed = {name: value for name, value in now.items() if self._emitted[name] != value}
        if changed:
            self._emitted.update(changed)
            self._properties_sent = asyncio.get_running_loop().time()
            self.emit_properties_changed(changed)

    def _send_signals(self, buses: Any, signals: list[tuple[str, Route | VifStatus]]) -> None:
        for member, value in signals:
            # The message dbus-fast's @dbus_signal wrapper would send, built directly
            # (a batch sends one per route): the signature is the declared one, and
            # the names and path are constants, so they need no validation each time.
            signature = self._signal_signatures[member]
            try:
                body = _SIGNAL_BODIES[member](value)
                for bus in buses:
                    bus.send(Message(message_type=MessageType.SIGNAL, path=OBJECT_PATH,
                                     interface=INTERFACE, member=member, signature=signature,
                                     body=body, validate=False))  # fmt: skip
            except Exception:
                log.exception("cannot emit %s for %r", member, value)


def _vif_body(vif: VifStatus) -> list[Any]:
    return [vif.interface, vif_index(vif), vif.family.value]


_SIGNAL_BODIES: dict[str, Callable[[Any], list[Any]]] = {
    "RouteAdded": lambda route: [*route.key.texts, route.input, list(route.outputs)],
    "RouteRemoved": lambda route: list(route.key.texts),
    "VifAdded": _vif_body,
    "VifRemoved": _vif_body,
}


def _sender() -> str:
    return current_message().sender


def _describe(route: Route) -> str:
    flags = " lease" if route.owner else ("" if route.persistent else " transient")
    return f"{route.key} in {route.input} out {','.join(route.outputs) or '-'}{flags}"


def _summary(routes: list[Route], limit: int = 3) -> str:
    shown = "; ".join(_describe(route) for route in routes[:limit])
    return shown + (f"; ... {len(routes) - limit} more" if len(routes) > limit else "")


def _filter_text(given: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(given.items())) or "all"


def _complete_introspection(interface: ServiceInterface) -> None:
    """Name output and signal arguments, publish polkit actions and property behaviour."""
    methods = exported_methods(type(interface))
    for method in ServiceInterface._get_methods(interface):
        for arg, name in zip(
            method.introspection.out_args, OUT_ARG_NAMES.get(method.name, []), strict=False
        ):
            arg.name = name
        action = getattr(methods[method.name], ACTION_MARK, None)
        if action:
            method.introspection.annotations[POLKIT_ANNOTATION] = action
    for signal in ServiceInterface._get_signals(interface):
        fn = getattr(type(interface), signal.name)
        params = list(inspect.signature(fn).parameters)[1:]
        for arg, name in zip(signal.introspection.args, params, strict=True):
            arg.name = name
            arg.direction = None
    for prop in ServiceInterface._get_properties(interface):
        if prop.name in CONST_PROPERTIES:
            prop.introspection.annotations[CHANGED_ANNOTATION] = "const"
