"""The client's connection and call layer: the system bus, one method call with the
contract's signature, and D-Bus errors mapped back to typed errors.

D-Bus error names come back as the same `mfc_dbus.errors` classes the service raised;
bus-level failures (service absent, activation failed, no bus) become the client-only
classes defined here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, Self

from dbus_fast import BusType, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from . import contract
from .errors import ERROR_BY_DBUS_NAME, MfcError
from .names import BUS_NAME, DBUS_NAME_HAS_NO_OWNER, DBUS_SERVICE_UNKNOWN, INTERFACE, OBJECT_PATH

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


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


# -- the connection ---------------------------------------------------------------------
class BusClient:
    """A connection to the system bus (or `address`) that calls org.mfc.Forwarding1."""

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
    ) -> Self:
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
