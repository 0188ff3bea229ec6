"""Lease routes: removed (and signalled) when the client that added them leaves the bus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from ..names import DBUS_DAEMON_INTERFACE, DBUS_DAEMON_NAME
from . import audit
from .outbox import BusGone, Outbox, daemon_call

NAME_OWNER_CHANGED = "NameOwnerChanged"
_MATCH = (
    f"type='signal',sender='{DBUS_DAEMON_NAME}',interface='{DBUS_DAEMON_INTERFACE}',"
    f"member='{NAME_OWNER_CHANGED}'"
)


class Leases:
    """Watches NameOwnerChanged; drops the routes of a lease holder that disconnected.

    `on_gone` callbacks (e.g. the authorizer's uid record) hear of every departed name.
    The lease holders are kept across bus connections: after a reconnect, `recheck()`
    ends the leases of holders that are no longer on the bus.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._owners: set[str] = set()
        self._on_gone: list[Callable[[str], None]] = []
        self._bus: MessageBus | None = None
        self._outbox: Outbox | None = None
        self._checks: set[asyncio.Task[None]] = set()

    def on_gone(self, callback: Callable[[str], None]) -> None:
        self._on_gone.append(callback)

    async def attach(self, bus: MessageBus, outbox: Outbox) -> None:
        """Watch `bus` (a new connection): subscribe, then recheck every holder."""
        self._bus, self._outbox = bus, outbox
        bus.add_message_handler(self._on_message)
        reply = await bus.call(daemon_call("AddMatch", "s", [_MATCH]))
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"cannot watch NameOwnerChanged: {reply.error_name}")
        for owner in sorted(self._owners):
            await self._confirm(owner)

    @property
    def owners(self) -> frozenset[str]:
        return frozenset(self._owners)

    def watch(self, owner: str) -> None:
        self._owners.add(owner)

    def confirm_soon(self, owner: str) -> None:
        """After adding lease routes: if the owner already left, drop them (checked
        after the reply, so the call is not held up)."""
        task = asyncio.ensure_future(self._confirm(owner))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _confirm(self, owner: str) -> None:
        bus, outbox = self._bus, self._outbox
        if bus is None or outbox is None or not bus.connected:
            return  # checked again by attach() on the next connection
        try:
            reply = await outbox.call(daemon_call("NameHasOwner", "s", [owner]))
        except BusGone:
            return  # checked again by attach() on the next connection
        if reply.message_type is MessageType.METHOD_RETURN and not reply.body[0]:
            self._release(owner, "is no longer on the bus")

    def _on_message(self, message: Message) -> None:
        if (
            message.message_type is MessageType.SIGNAL
            and message.member == NAME_OWNER_CHANGED
            and message.sender == DBUS_DAEMON_NAME
            and message.signature == "sss"
        ):
            name, _old, new = message.body
            if not new and name.startswith(":"):
                for callback in self._on_gone:
                    callback(name)
                if name in self._owners:
                    self._release(name, "left the bus")

    def _release(self, owner: str, why: str) -> None:
        if owner not in self._owners:
            return
        self._owners.discard(owner)
        removed = self._engine.remove_routes_owned_by(owner)
        audit.lease_ended(owner, why, len(removed))
