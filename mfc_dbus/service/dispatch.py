"""The bus message handler that serves /org/mfc/Forwarding1 from the contract.

Every method call runs the same steps: check the signature against the XML, let the
handler validate its arguments (it returns the change still to be made), authorize
the call when the XML names a polkit action, make the change, reply. A root caller
already known is authorized without a round trip, so its call is answered in the
loop turn after it is read; otherwise the rest waits for polkit in a task.

Calls are queued as they are read and served, in order, in the next loop turn.
dbus-fast before 2.x reads its socket until it is empty before it returns to the
event loop; served inside that read, a steady stream of calls from many clients kept
everything else waiting (a call waiting for its caller's uid waited up to 29 s, and
kernel upcalls and timers as long).
Introspection (documentation included), org.freedesktop.DBus.Properties and the
path's ancestors are answered from the contract too; Peer's two methods are left to
dbus-fast. Every other call to the path is answered here as GDBus and sd-bus services
answer it: a known method with another signature is InvalidArgs naming the expected
one, anything else UnknownMethod or UnknownInterface (ObjectManager is not
implemented: the object has no children; its state is ListRoutes, ListVifs and the
properties).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, Protocol

from dbus_fast import Message, MessageFlag, MessageType, Variant

from ..contract import Contract, MethodSpec
from ..names import (
    DBUS_INVALID_ARGS,
    DBUS_PEER_INTERFACE,
    DBUS_PROPERTIES_INTERFACE,
    DBUS_PROPERTY_READ_ONLY,
    DBUS_UNKNOWN_INTERFACE,
    DBUS_UNKNOWN_METHOD,
    DBUS_UNKNOWN_PROPERTY,
    OBJECT_PATH,
)
from .auth import Authorizer, Call, CallerGone, changing, is_public
from .boundary import error_of
from .outbox import Outbox

log = logging.getLogger("mfc_dbus.service")

_NO_REPLY_EXPECTED = MessageFlag.NO_REPLY_EXPECTED.value
_DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)
_STANDARD_INTERFACES = """\
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg name="xml_data" type="s" direction="out"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="out"/>
    </method>
    <method name="GetAll">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="props" type="a{sv}" direction="out"/>
    </method>
    <method name="Set">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg name="interface_name" type="s"/>
      <arg name="changed_properties" type="a{sv}"/>
      <arg name="invalidated_properties" type="as"/>
    </signal>
  </interface>
"""

Handler = Callable[..., Any]
# The standard interfaces' methods: member -> input signature.
STANDARD_METHODS: dict[str, dict[str, str]] = {
    interface.get("name", ""): {
        method.get("name", ""): "".join(
            arg.get("type", "")
            for arg in method.findall("arg")
            if arg.get("direction", "in") == "in"
        )
        for method in interface.findall("method")
    }
    for interface in ET.fromstring(f"<node>{_STANDARD_INTERFACES}</node>").iter("interface")
}


class ServedObject(Protocol):
    """What the dispatcher needs of the exported object: one handler per contract
    method (named as the member), the property values, and a hold on what the calls'
    changes send (their signals go after the replies to every call served with them)."""

    def property_value(self, name: str) -> Any: ...

    def hold_signals(self) -> None: ...

    def send_held(self) -> None: ...


def object_xml(contract: Contract) -> str:
    """The introspection of the object: the standard interfaces and the contract's,
    documentation included."""
    interface = next(
        node
        for node in ET.fromstring(contract.xml).iter("interface")
        if node.get("name") == contract.interface
    )
    ET.indent(interface, "  ", level=1)
    body = ET.tostring(interface, encoding="unicode").rstrip()
    return f"{_DOCTYPE}<node>\n{_STANDARD_INTERFACES}  {body}\n</node>\n"


def ancestors_xml(path: str) -> dict[str, str]:
    """Introspection of "/", "/org", "/org/mfc": each names its one child."""
    parts = path.strip("/").split("/")
    found = {}
    for depth in range(len(parts)):
        parent = "/" + "/".join(parts[:depth])
        found[parent] = f'{_DOCTYPE}<node>\n  <node name="{parts[depth]}"/>\n</node>\n'
    return found


def handlers_of(served: ServedObject, contract: Contract) -> dict[str, Handler]:
    """Each contract method's handler; TypeError if one is missing, if the object has a
    handler-like method (a capitalised name) the contract does not name, or if the XML
    names no polkit action for a handler not marked @public (or names one for a handler
    that is): default-deny is decided when the service is built."""
    kind = type(served).__name__
    extra = [
        name
        for name in dir(served)
        if name[:1].isupper() and callable(getattr(served, name)) and name not in contract.methods
    ]
    if extra:
        raise TypeError(f"{kind} has handlers the contract does not name: {extra}")
    handlers: dict[str, Handler] = {}
    for name, spec in contract.methods.items():
        handler = getattr(served, name, None)
        if handler is None:
            raise TypeError(f"{kind} has no handler for {name}")
        if (spec.action is None) != is_public(handler):
            raise TypeError(
                f"{kind}.{name}: the contract names "
                + (f"polkit action {spec.action}" if spec.action else "no polkit action")
                + (" but the handler is @public" if is_public(handler) else "")
                + ("" if spec.action or is_public(handler) else " and it is not @public")
            )
        handlers[name] = handler
    return handlers


class Dispatcher:
    """A dbus-fast message handler (`bus.add_message_handler(dispatcher.handle)`)."""

    def __init__(
        self,
        served: ServedObject,
        contract: Contract,
        authorizer: Authorizer,
        outbox: Outbox,
    ) -> None:
        self._served = served
        self._contract = contract
        self._handlers = handlers_of(served, contract)
        self._authorizer = authorizer
        self._outbox = outbox
        self._object_xml = object_xml(contract)
        self._ancestors = ancestors_xml(OBJECT_PATH)
        self._interfaces = ", ".join([*STANDARD_METHODS, contract.interface])
        self._waiting: set[asyncio.Task[None]] = set()  # calls waiting for polkit
        self._inbox: list[tuple[Message, str, str | None]] = []  # to serve next loop turn

    def handle(self, message: Message) -> bool | None:
        """True when the message was ours (answered now or later); None otherwise."""
        member = message.member
        if message.message_type is not MessageType.METHOD_CALL or member is None:
            return None
        if message.path != OBJECT_PATH:
            if member == "Introspect" and message.path in self._ancestors:
                self._reply_value(message, "s", self._ancestors[message.path])
                return True
            return None
        interface = message.interface or self._interface_of(member)
        if interface == DBUS_PEER_INTERFACE:
            return self._standard_call(message, interface, member)  # may be dbus-fast's
        if not self._inbox:
            asyncio.get_running_loop().call_soon(self._serve_inbox)
        self._inbox.append((message, member, interface))
        return True

    def _serve_inbox(self) -> None:
        inbox, self._inbox = self._inbox, []
        self._served.hold_signals()
        try:
            for message, member, interface in inbox:
                try:
                    self._serve(message, member, interface)
                except Exception as exc:  # one bad call must not cost the rest their replies
                    self._error(message, *error_of(exc, member))
        finally:
            self._served.send_held()

    def _serve(self, message: Message, member: str, interface: str | None) -> None:
        if interface == self._contract.interface:
            self._method_call(message, member)
        elif interface in STANDARD_METHODS:
            self._standard_call(message, interface, member)
        elif interface is None:
            self._error(
                message,
                DBUS_UNKNOWN_METHOD,
                f"no method {member} at {OBJECT_PATH}; it implements {self._interfaces}",
            )
        else:
            self._error(
                message,
                DBUS_UNKNOWN_INTERFACE,
                f"{OBJECT_PATH} does not implement {interface}; it implements "
                f"{self._interfaces} (see its introspection)",
            )

    def _interface_of(self, member: str) -> str | None:
        """The interface of a call that names none: the contract's, else a standard one."""
        if member in self._contract.methods:
            return self._contract.interface
        found = (name for name, methods in STANDARD_METHODS.items() if member in methods)
        return next(found, None)

    def _standard_call(self, message: Message, interface: str, member: str) -> bool | None:
        methods = STANDARD_METHODS[interface]
        expected = methods.get(member)
        if expected is None:
            known = ", ".join(f"{name}({signature})" for name, signature in methods.items())
            self._error(
                message, DBUS_UNKNOWN_METHOD, f"{interface} has no method {member}; it has {known}"
            )
        elif message.signature != expected:
            self._error(
                message,
                DBUS_INVALID_ARGS,
                f"{interface}.{member} takes ({expected}), not ({message.signature})",
            )
        elif interface == DBUS_PEER_INTERFACE:
            if message.interface is None and member == "Ping":
                self._reply_value(message, "", None)  # dbus-fast wants the interface named
                return True
            return None  # dbus-fast answers Ping and GetMachineId
        elif interface == DBUS_PROPERTIES_INTERFACE:
            self._properties_call(message, member)
        else:
            self._reply_value(message, "s", self._object_xml)
        return True

    # -- the contract's methods --------------------------------------------------------
    def _method_call(self, message: Message, member: str) -> None:
        spec = self._contract.methods.get(member)
        if spec is None:
            known = ", ".join(self._contract.methods)
            self._error(
                message,
                DBUS_UNKNOWN_METHOD,
                f"{member} is not a method of {self._contract.interface}; its methods are "
                f"{known}",
            )
            return
        if message.signature != spec.in_signature:
            self._error(
                message,
                DBUS_INVALID_ARGS,
                f"{member} takes ({spec.in_signature}), not ({message.signature})",
            )
            return
        call = Call(message, member, spec.action)
        try:
            prepared = self._handlers[member](call, *message.body)
        except Exception as exc:
            self._failed(call, exc)
            return
        if spec.action is None:
            self._reply(call, spec, prepared)
        elif self._authorizer.allows_at_once(call):
            self._commit(call, spec, prepared)
        else:
            task = asyncio.ensure_future(self._authorize_then_commit(call, spec, prepared))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)

    async def _authorize_then_commit(
        self, call: Call, spec: MethodSpec, change: Callable[[], Any]
    ) -> None:
        try:
            await self._authorizer.authorize(call)
        except Exception as exc:
            self._failed(call, exc)
            return
        self._commit(call, spec, change)

    def _commit(self, call: Call, spec: MethodSpec, change: Callable[[], Any]) -> None:
        try:
            with changing(call):
                result = change()
        except Exception as exc:
            self._failed(call, exc)
            return
        self._reply(call, spec, result)

    def _reply(self, call: Call, spec: MethodSpec, result: Any) -> None:
        outputs = len(spec.outputs)
        body = [] if outputs == 0 else [result] if outputs == 1 else list(result)
        if not call.message.flags.value & _NO_REPLY_EXPECTED:
            self._outbox.send(Message.new_method_return(call.message, spec.out_signature, body))

    def _failed(self, call: Call, exc: BaseException) -> None:
        if isinstance(exc, CallerGone):
            # Nobody to answer: say so once, plainly (a fire-and-forget call lands here).
            log.warning("%s from %s was not made: %s", call.member, call.sender, exc.message)
            return
        name, text = error_of(exc, call.member)
        self._error(call.message, name, text)

    def _error(self, message: Message, name: str, text: str) -> None:
        # Non-ASCII characters as escapes: dbus-fast 1.84 (Debian 12) marshals the
        # string of an error reply with a wrong length, and dbus-daemon drops the
        # connection of a malformed message. The offending value stays recognisable.
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        if message.flags.value & _NO_REPLY_EXPECTED:
            log.warning("%s (no reply wanted) failed: %s: %s", message.member, name, text)
        else:
            self._outbox.send(Message.new_error(message, name, text))

    def _reply_value(self, message: Message, signature: str, value: Any) -> None:
        if not message.flags.value & _NO_REPLY_EXPECTED:
            body = [value] if signature else []
            self._outbox.send(Message.new_method_return(message, signature, body))

    # -- org.freedesktop.DBus.Properties (member and signature already checked) ----------
    def _properties_call(self, message: Message, member: str) -> None:
        body = message.body
        if member == "Get":
            interface, name = body
            if self._property_known(message, interface, name):
                self._reply_value(message, "v", self._variant(name))
        elif member == "GetAll":
            if body[0] == self._contract.interface:
                values = {name: self._variant(name) for name in self._contract.properties}
            else:
                values = {}
            self._reply_value(message, "a{sv}", values)
        else:  # Set
            interface, name, _value = body
            if self._property_known(message, interface, name):
                self._error(message, DBUS_PROPERTY_READ_ONLY, f"property {name} is read-only")

    def _property_known(self, message: Message, interface: str, name: str) -> bool:
        if interface != self._contract.interface:
            self._error(
                message,
                DBUS_UNKNOWN_INTERFACE,
                f"no interface {interface!r} here; use {self._contract.interface}",
            )
            return False
        if name not in self._contract.properties:
            known = ", ".join(self._contract.properties)
            self._error(
                message, DBUS_UNKNOWN_PROPERTY, f"no property {name!r}; the properties are {known}"
            )
            return False
        return True

    def _variant(self, name: str) -> Variant:
        return Variant(
            self._contract.properties[name].signature, self._served.property_value(name)
        )
