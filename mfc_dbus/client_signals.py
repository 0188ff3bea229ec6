"""The client's view of the service's signals: Events whose arguments are named as in
the interface XML (RouteAdded: source, group, input, outputs, table, family), and the
subscription that delivers them; MfcClient (client.py) has `watch`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType

from .client_bus import CONTRACT, BusClient
from .client_options import unwrap
from .names import (
    BUS_NAME,
    DBUS_DAEMON_INTERFACE,
    DBUS_DAEMON_NAME,
    DBUS_DAEMON_PATH,
    DBUS_PROPERTIES_INTERFACE,
    INTERFACE,
    OBJECT_PATH,
    PENDING_VIF_INDEX,
)

# Each signal's argument names, in order.
SIGNAL_ARGS: dict[str, tuple[str, ...]] = {
    name: spec.arg_names for name, spec in CONTRACT.signals.items()
}


@dataclass(frozen=True)
class Event:
    """A signal from the service, or the service appearing/leaving the bus."""

    name: str  # RouteAdded, RouteRemoved, VifAdded, VifRemoved, GroupJoined, GroupLeft,
    # PropertiesChanged, ServiceStarted, ServiceStopped
    args: dict[str, Any] = field(default_factory=dict)


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


class SignalMethods(BusClient):
    """The signal subscription of MfcClient."""

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
