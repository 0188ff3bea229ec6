"""Lease routes: removed (and signalled) when the client that added them leaves the bus."""

from __future__ import annotations

import logging
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from ..names import DBUS_DAEMON_INTERFACE, DBUS_DAEMON_NAME, DBUS_DAEMON_PATH

log = logging.getLogger("mfc_dbus.audit")

NAME_OWNER_CHANGED = "NameOwnerChanged"
_MATCH = (
    f"type='signal',sender='{DBUS_DAEMON_NAME}',interface='{DBUS_DAEMON_INTERFACE}',"
    f"member='{NAME_OWNER_CHANGED}'"
)


def _daemon_call(member: str, signature: str, body: list[Any]) -> Message:
    return Message(
        destination=DBUS_DAEMON_NAME,
        path=DBUS_DAEMON_PATH,
        interface=DBUS_DAEMON_INTERFACE,
        member=member,
        signature=signature,
        body=body,
    )


class Leases:
    """Watches NameOwnerChanged; drops the routes of a lease holder that disconnected.

    `on_gone` callbacks (e.g. the authorizer's uid cache) hear of every departed name.
    """

    def __init__(self, bus: MessageBus, engine: Any) -> None:
        self._bus = bus
        self._engine = engine
        self._owners: set[str] = set()
        self._on_gone: list[Any] = []

    def on_gone(self, callback: Any) -> None:
        self._on_gone.append(callback)

    async def start(self) -> None:
        self._bus.add_message_handler(self._on_message)
        reply = await self._bus.call(_daemon_call("AddMatch", "s", [_MATCH]))
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"cannot watch NameOwnerChanged: {reply.error_name}")

    @property
    def owners(self) -> frozenset[str]:
        return frozenset(self._owners)

    def watch(self, owner: str) -> None:
        self._owners.add(owner)

    async def confirm(self, owner: str) -> None:
        """After adding lease routes: if the owner already left, drop them now."""
        reply = await self._bus.call(_daemon_call("NameHasOwner", "s", [owner]))
        if reply.message_type is MessageType.METHOD_RETURN and not reply.body[0]:
            self._release(owner)

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
                    self._release(name)

    def _release(self, owner: str) -> None:
        self._owners.discard(owner)
        removed = self._engine.remove_routes_owned_by(owner)
        log.info("lease holder %s left the bus: %d routes removed", owner, len(removed))
