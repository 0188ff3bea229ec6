"""A subscriber collecting the service's signals (RouteAdded, PropertiesChanged, ...)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.names import BUS_NAME, DBUS_DAEMON_INTERFACE, DBUS_DAEMON_NAME, DBUS_DAEMON_PATH


@dataclass
class Subscriber:
    bus: MessageBus
    seen: list[tuple[str, list[Any]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, address: str) -> Subscriber:
        bus = await MessageBus(bus_address=address).connect()
        subscriber = cls(bus)
        bus.add_message_handler(subscriber._on_message)
        reply = await bus.call(
            Message(
                destination=DBUS_DAEMON_NAME, path=DBUS_DAEMON_PATH,
                interface=DBUS_DAEMON_INTERFACE, member="AddMatch", signature="s",
                body=["type='signal',path='/org/mfc/Forwarding1'"],
            )
        )  # fmt: skip
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return subscriber

    def _on_message(self, message: Message) -> None:
        if message.message_type is MessageType.SIGNAL and message.path == "/org/mfc/Forwarding1":
            self.seen.append((message.member, message.body))
            self._changed.set()

    async def wait_for(self, member: str, *prefix: Any, timeout: float = 5.0) -> list[Any]:
        """The first signal `member` whose body starts with `prefix`."""
        async with asyncio.timeout(timeout):
            while True:
                for name, body in self.seen:
                    if name == member and list(body[: len(prefix)]) == list(prefix):
                        return body
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        self.bus.disconnect()


__all__ = ["BUS_NAME", "Subscriber"]
