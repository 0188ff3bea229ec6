"""Async D-Bus client for org.mfc.Forwarding1, reusable by any program.

One coroutine per D-Bus method, its signature, option types and polkit action taken
from the interface XML (mfc_dbus.contract); signals become Events whose arguments are
named as in the XML (RouteAdded: source, group, input, outputs, table, family).
D-Bus error names come back as the same `mfc_dbus.errors` classes the service raised;
bus-level failures (service absent, activation failed, no bus) become the client-only
classes defined here. Nothing in this module touches the kernel.

    async with await MfcClient.connect() as client:
        await client.add_route("", "232.1.1.1", "eth0", ["eth1"])
        for route in await client.list_routes():
            print(route.source, route.group, route.packets)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from . import contract
from .client_groups import GroupInfo, GroupMethods
from .errors import (
    ERROR_BY_DBUS_NAME,
    AccessDenied,
    InteractiveAuthorizationRequired,
    InvalidArgument,
    LimitExceeded,
    MfcError,
)
from .gcpause import gc_paused
from .names import (
    BUS_NAME,
    DBUS_DAEMON_INTERFACE,
    DBUS_DAEMON_NAME,
    DBUS_DAEMON_PATH,
    DBUS_NAME_HAS_NO_OWNER,
    DBUS_PROPERTIES_INTERFACE,
    DBUS_SERVICE_UNKNOWN,
    INTERFACE,
    OBJECT_PATH,
    PAGE_NEXT,
    PENDING_VIF_INDEX,
)
from .wiresize import SYSTEM_BUS_MESSAGE_LIMIT, RowSizer, fits, mib, rows_size

# Bus-level error names only a client meets (the service never sends them).
DBUS_SPAWN_PREFIX = "org.freedesktop.DBus.Error.Spawn."
DBUS_NO_REPLY = ("org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout")
DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"  # libdbus' default address
DEFAULT_TIMEOUT = 25.0  # seconds, as libdbus

CONTRACT = contract.load()
# Which polkit action guards each mutating method (reads need none).
ACTION_BY_METHOD: dict[str, str] = {
    name: spec.action for name, spec in CONTRACT.methods.items() if spec.action
}
PAGE_SIZE = 10_000  # ListRoutes rows per call: about 3 MiB, well inside a bus message
_BATCH_ROW = RowSizer(CONTRACT.methods["AddRoutes"].arg("routes").keys)
# D-Bus type of every option and filter key the contract defines.
OPTION_SIGNATURES: dict[str, str] = CONTRACT.option_types()
# Each signal's argument names, in order.
SIGNAL_ARGS: dict[str, tuple[str, ...]] = {
    name: spec.arg_names for name, spec in CONTRACT.signals.items()
}


# -- client-side errors --------------------------------------------------------------
class ServiceUnavailable(MfcError):
    """The name is not on the bus and could not be activated."""

    dbus_name = DBUS_SERVICE_UNKNOWN


class ActivationFailed(MfcError):
    """The bus tried to start the service and the service failed to start."""

    dbus_name = DBUS_SPAWN_PREFIX + "Failed"


class BusUnavailable(MfcError):
    """No system bus to talk to (no socket, refused, authentication failed)."""

    dbus_name = "org.freedesktop.DBus.Error.NoServer"


class NoReply(MfcError):
    """The service did not answer in time."""

    dbus_name = DBUS_NO_REPLY[0]


class UnexpectedError(MfcError):
    """A D-Bus error this client does not know; keeps the name for the message."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.dbus_name = name


def error_from_dbus(name: str, text: str, method: str | None = None) -> MfcError:
    """Map a D-Bus error name (and its text) back to a typed error."""
    cls = ERROR_BY_DBUS_NAME.get(name)
    if cls is not None:
        error = cls(text)
    elif name in (DBUS_SERVICE_UNKNOWN, DBUS_NAME_HAS_NO_OWNER):
        error = ServiceUnavailable(text)
    elif name.startswith(DBUS_SPAWN_PREFIX):
        error = ActivationFailed(text)
    elif name in DBUS_NO_REPLY:
        error = NoReply(text)
    else:
        error = UnexpectedError(text, name)
    error.method = method  # type: ignore[attr-defined]
    error.action = ACTION_BY_METHOD.get(method or "")  # type: ignore[attr-defined]
    return error


def _page_next(items: Sequence[Any]) -> str | None:
    """The resume token in a ListRoutes page's last row; None on the last page."""
    if not items:
        return None
    token = items[-1][4].get(PAGE_NEXT)
    return None if token is None else str(token.value) or None


# -- value types -----------------------------------------------------------------------
@dataclass(frozen=True)
class RouteSpec:
    """One route to add (AddRoute / an AddRoutes element)."""

    source: str
    group: str
    input: str
    outputs: tuple[str, ...]
    persistent: bool | None = None
    lease: bool | None = None
    table: int | None = None
    replace: bool | None = None  # an exact (S,G) may move to another input

    def options(self) -> dict[str, Variant]:
        return make_options(
            persistent=self.persistent, lease=self.lease, table=self.table, replace=self.replace
        )


@dataclass(frozen=True)
class RouteInfo:
    """One element of ListRoutes."""

    source: str
    group: str
    input: str
    outputs: tuple[str, ...]
    state: str = "installed"
    family: str = ""
    table: int = 0
    persistent: bool = True
    owner: str | None = None
    missing: tuple[str, ...] = ()
    packets: int = 0
    bytes: int = 0
    wrong_if: int = 0
    origin: str | None = None  # FILE:LINE of a configuration file's route
    next: str | None = None  # on a page's last row: the resume token of the next page

    @classmethod
    def from_dbus(cls, item: Sequence[Any]) -> RouteInfo:
        source, group, input_, outputs, extra = item
        info = {key: variant.value for key, variant in extra.items()}  # flat values only
        get = info.get  # values of the contract's types; absent keys: the defaults
        return cls(
            source or "*", group, input_, tuple(outputs), get("state", "installed"),
            get("family") or ("ipv6" if ":" in group else "ipv4"), get("table", 0),
            get("persistent", True), get("owner") or None, tuple(get("missing", ())),
            get("packets", 0), get("bytes", 0), get("wrong_if", 0), get("origin") or None,
            get(PAGE_NEXT) or None,
        )  # fmt: skip


@dataclass(frozen=True)
class VifInfo:
    """One element of ListVifs; `index` is None while the interface is missing."""

    interface: str
    index: int | None
    family: str = "ipv4"
    table: int = 0
    ttl_threshold: int = 1
    explicit: bool = False
    state: str = "installed"
    in_packets: int = 0
    out_packets: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    mrdisc: bool = False

    @classmethod
    def from_dbus(cls, item: Sequence[Any]) -> VifInfo:
        interface, index, extra = item
        info = unwrap(extra)
        return cls(
            interface=interface,
            index=None if index == PENDING_VIF_INDEX else int(index),
            family=str(info.get("family", "ipv4")),
            table=int(info.get("table", 0)),
            ttl_threshold=int(info.get("ttl_threshold", 1)),
            explicit=bool(info.get("explicit", False)),
            state=str(info.get("state", "pending" if index == PENDING_VIF_INDEX else "installed")),
            in_packets=int(info.get("in_packets", 0)),
            out_packets=int(info.get("out_packets", 0)),
            in_bytes=int(info.get("in_bytes", 0)),
            out_bytes=int(info.get("out_bytes", 0)),
            mrdisc=bool(info.get("mrdisc", False)),
        )


@dataclass(frozen=True)
class Event:
    """A signal from the service, or the service appearing/leaving the bus."""

    name: str  # RouteAdded, RouteRemoved, VifAdded, VifRemoved, GroupJoined, GroupLeft,
    # PropertiesChanged, ServiceStarted, ServiceStopped
    args: dict[str, Any] = field(default_factory=dict)


# -- helpers -----------------------------------------------------------------------------
def unwrap(value: Any) -> Any:
    """Turn Variants (nested in dicts and lists) into plain Python values."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def make_options(**values: Any) -> dict[str, Variant]:
    """An a{sv} from keyword arguments, typed as the contract says; None means "not
    given: service default"."""
    options: dict[str, Variant] = {}
    for key, value in values.items():
        if value is None:
            continue
        signature = OPTION_SIGNATURES.get(key)
        if signature is None:
            valid = ", ".join(sorted(OPTION_SIGNATURES))
            raise InvalidArgument(f"unknown option {key!r}; valid options: {valid}")
        options[key] = Variant(signature, value)
    return options


def check_batch_size(routes: Sequence[Sequence[Any]], limit: int) -> None:
    """LimitExceeded, with the batch size that fits, when an AddRoutes of `routes`
    (as sent) would exceed `limit` bytes: the bus would drop the connection instead. A
    cheap upper bound decides most batches; past it the batch is measured exactly."""
    size = sum(
        _BATCH_ROW.bound((source, group, input_), (outputs,), options)
        for source, group, input_, outputs, options in routes
    )
    if not fits(size, limit):
        size = rows_size(routes)  # the batch options are within HEADER_ALLOWANCE
    if not fits(size, limit):
        most = max(1, len(routes) * (limit - 65536) // size)
        raise LimitExceeded(
            f"AddRoutes: a batch of {len(routes)} routes would take {mib(size)}, more than "
            f"the {mib(limit)} a bus message may hold; split it into batches of at most "
            f"{most} routes (each batch is added all or nothing)"
        )


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


# -- the client ---------------------------------------------------------------------------
class MfcClient(GroupMethods):
    """A connection to org.mfc.Forwarding1 on the system bus (or `address`)."""

    # The largest message AddRoutes sends (the bus drops a connection sending more).
    message_limit = SYSTEM_BUS_MESSAGE_LIMIT

    def __init__(
        self, bus: MessageBus, *, interactive: bool = False, timeout: float | None = None
    ) -> None:
        self.bus = bus
        self.interactive = interactive
        self.timeout = timeout
        # Called once before the first mutating call (the CLI starts a polkit agent).
        self.before_mutation: Callable[[], None] | None = None
        self._mutated = False

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        *,
        interactive: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> MfcClient:
        """Connect to the system bus (DBUS_SYSTEM_BUS_ADDRESS is honoured) or `address`.

        `interactive` sets ALLOW_INTERACTIVE_AUTHORIZATION on mutating calls, so polkit
        may ask the user for a password through an agent; `timeout` (seconds, None for
        no limit) bounds each call.
        """
        address = address or system_bus_address()
        try:
            # dbus-fast before 5.0 connects the socket in the constructor already.
            bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM)
            await bus.connect()
        except Exception as exc:  # OSError, AuthError, InvalidAddressError...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise BusUnavailable(
                f"cannot connect to the system bus at {address}: {reason}"
            ) from None
        return cls(bus, interactive=interactive, timeout=timeout)

    async def close(self) -> None:
        self.bus.disconnect()

    async def __aenter__(self) -> MfcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------------
    async def call(
        self,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        interface: str = INTERFACE,
        destination: str = BUS_NAME,
        path: str = OBJECT_PATH,
    ) -> list[Any]:
        """Call one method; returns the reply body or raises a typed MfcError."""
        flags = MessageFlag.NONE
        mutating = member in ACTION_BY_METHOD and interface == INTERFACE
        if mutating:
            if self.before_mutation is not None and not self._mutated:
                self.before_mutation()
            self._mutated = True
            if self.interactive:
                flags |= MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
            flags=flags,
        )
        # A password prompt may take as long as the user needs.
        timeout = None if (mutating and self.interactive) else self.timeout
        try:
            reply = await asyncio.wait_for(self.bus.call(message), timeout)
        except TimeoutError:
            raise NoReply(f"the service did not answer {member} within {timeout:g} s") from None
        except DBusError as exc:  # raised for some bus-level failures
            raise error_from_dbus(exc.type, exc.text, member) from None
        except (OSError, EOFError) as exc:
            raise BusUnavailable(f"lost the connection to the system bus: {exc}") from None
        if reply is None:
            raise BusUnavailable("lost the connection to the system bus")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise error_from_dbus(reply.error_name or "", text, member)
        return list(reply.body)

    async def invoke(self, member: str, *args: Any) -> list[Any]:
        """Call the contract's method `member` with its signature from the contract."""
        return await self.call(member, CONTRACT.methods[member].in_signature, args)

    # -- routes ------------------------------------------------------------------------------
    async def add_route(
        self,
        source: str,
        group: str,
        input: str,
        outputs: Iterable[str],
        *,
        persistent: bool | None = None,
        lease: bool | None = None,
        table: int | None = None,
        replace: bool | None = None,
    ) -> None:
        """replace: an exact (S,G) that exists from another input moves to `input`."""
        options = make_options(persistent=persistent, lease=lease, table=table, replace=replace)
        await self.invoke("AddRoute", source, group, input, list(outputs), options)

    async def add_routes(
        self, routes: Iterable[RouteSpec], options: Mapping[str, Any] | None = None
    ) -> int:
        """Add many routes at once, all or nothing; returns how many were added."""
        rows = [[r.source, r.group, r.input, list(r.outputs), r.options()] for r in routes]
        check_batch_size(rows, self.message_limit)
        (count,) = await self.invoke("AddRoutes", rows, make_options(**(options or {})))
        return int(count)

    async def remove_route(
        self, source: str, group: str, *, table: int | None = None, input: str | None = None
    ) -> None:
        """input: which of several (*,G) or prefix routes of (source, group) to remove."""
        await self.invoke("RemoveRoute", source, group, make_options(table=table, input=input))

    async def add_outputs(
        self,
        source: str,
        group: str,
        outputs: Iterable[str],
        *,
        table: int | None = None,
        input: str | None = None,
    ) -> list[str]:
        """Add outputs to a route, keeping its others; returns its outputs now."""
        options = make_options(table=table, input=input)
        (now,) = await self.invoke("AddOutputs", source, group, list(outputs), options)
        return list(now)

    async def remove_outputs(
        self,
        source: str,
        group: str,
        outputs: Iterable[str],
        *,
        table: int | None = None,
        input: str | None = None,
    ) -> list[str]:
        """Remove outputs of a route (none left: it blocks); returns its outputs now."""
        options = make_options(table=table, input=input)
        (now,) = await self.invoke("RemoveOutputs", source, group, list(outputs), options)
        return list(now)

    async def flush(
        self, *, family: str | None = None, table: int | None = None, learned: bool = False
    ) -> int:
        options = make_options(family=family, table=table, learned=learned or None)
        (removed,) = await self.invoke("Flush", options)
        return int(removed)

    async def list_routes(
        self, *, family: str | None = None, table: int | None = None
    ) -> list[RouteInfo]:
        """Every route, read in pages of PAGE_SIZE."""
        found: list[RouteInfo] = []
        async for page in self.route_pages(family=family, table=table):
            found.extend(page)
        return found

    async def route_pages(
        self, *, family: str | None = None, table: int | None = None, size: int = PAGE_SIZE
    ) -> AsyncIterator[list[RouteInfo]]:
        """The routes, one ListRoutes page of at most `size` at a time, in the service's
        order; a route that exists throughout comes exactly once. The next page is
        asked for as soon as a page arrives, so the service makes it while this one is
        converted and used."""

        def ask(after: str | None) -> asyncio.Task[list[Any]]:
            options = make_options(family=family, table=table, limit=size, after=after)
            return asyncio.ensure_future(self.invoke("ListRoutes", options))

        asked = ask(None)
        try:
            while True:
                (items,) = await asked
                after = _page_next(items)
                if after is not None:
                    asked = ask(after)
                with gc_paused():  # a page is many objects, none in a cycle
                    page = list(map(RouteInfo.from_dbus, items))
                yield page
                if after is None:
                    return
        finally:
            asked.cancel()  # a page asked for that the caller no longer wants

    # -- VIFs ----------------------------------------------------------------------------------
    async def add_vif(
        self,
        interface: str,
        *,
        family: str | None = None,
        table: int | None = None,
        ttl_threshold: int | None = None,
        persistent: bool | None = None,
        mrdisc: bool | None = None,
    ) -> int | None:
        """Returns the VIF index, or None while the interface is missing (pending)."""
        options = make_options(
            family=family,
            table=table,
            ttl_threshold=ttl_threshold,
            persistent=persistent,
            mrdisc=mrdisc,
        )
        (index,) = await self.invoke("AddVif", interface, options)
        return None if index == PENDING_VIF_INDEX else int(index)

    async def remove_vif(
        self, interface: str, *, family: str | None = None, table: int | None = None
    ) -> None:
        await self.invoke("RemoveVif", interface, make_options(family=family, table=table))

    async def list_vifs(
        self, *, family: str | None = None, table: int | None = None
    ) -> list[VifInfo]:
        (items,) = await self.invoke("ListVifs", make_options(family=family, table=table))
        return [VifInfo.from_dbus(item) for item in items]

    # -- service -------------------------------------------------------------------------------
    async def reload(self) -> None:
        await self.invoke("Reload")

    async def properties(self) -> dict[str, Any]:
        """Version, RouteCount, VifCount, GroupCount, Families."""
        (values,) = await self.call(
            "GetAll", "s", [INTERFACE], interface=DBUS_PROPERTIES_INTERFACE
        )
        return unwrap(values)

    async def watch(self, callback: Callable[[Event], Awaitable[None] | None]) -> None:
        """Deliver the service's signals (and its start/stop) to `callback`.

        Returns once the subscription is in place; events keep arriving until close().
        """
        rules = [
            f"type='signal',sender='{BUS_NAME}',path='{OBJECT_PATH}'",
            f"type='signal',sender='{DBUS_DAEMON_NAME}',member='NameOwnerChanged',arg0='{BUS_NAME}'",
        ]
        for rule in rules:
            await self.call(
                "AddMatch",
                "s",
                [rule],
                interface=DBUS_DAEMON_INTERFACE,
                destination=DBUS_DAEMON_NAME,
                path=DBUS_DAEMON_PATH,
            )

        def handler(message: Message) -> None:
            event = event_from_message(message)
            if event is None:
                return
            result = callback(event)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)

        self.bus.add_message_handler(handler)


def event_from_message(message: Message) -> Event | None:
    """The Event a signal message carries, or None when it is not one of ours."""
    if message.message_type != MessageType.SIGNAL:
        return None
    if message.interface == DBUS_DAEMON_INTERFACE and message.member == "NameOwnerChanged":
        name, _old, new = message.body
        if name != BUS_NAME:
            return None
        return Event("ServiceStarted" if new else "ServiceStopped", {"owner": new or None})
    if message.path != OBJECT_PATH:
        return None
    if message.interface == DBUS_PROPERTIES_INTERFACE and message.member == "PropertiesChanged":
        interface, changed, invalidated = message.body
        if interface != INTERFACE:
            return None
        return Event(
            "PropertiesChanged", {"changed": unwrap(changed), "invalidated": list(invalidated)}
        )
    if message.interface == INTERFACE and message.member in SIGNAL_ARGS:
        names = SIGNAL_ARGS[message.member]
        args = dict(zip(names, unwrap(list(message.body)), strict=False))
        if "source" in args and not args["source"]:
            args["source"] = "*"
        if args.get("index") == PENDING_VIF_INDEX:
            args["index"] = None
        return Event(message.member, args)
    return None


__all__ = [
    "ACTION_BY_METHOD",
    "AccessDenied",
    "ActivationFailed",
    "BusUnavailable",
    "Event",
    "GroupInfo",
    "InteractiveAuthorizationRequired",
    "MfcClient",
    "NoReply",
    "RouteInfo",
    "RouteSpec",
    "ServiceUnavailable",
    "UnexpectedError",
    "VifInfo",
    "error_from_dbus",
    "event_from_message",
]
