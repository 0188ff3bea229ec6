"""In-process service on a private bus, and a dbus-fast client to call it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_dbus.service.daemon import Options, Service

from .fake_engine import FakeEngine


@dataclass
class Client:
    bus: MessageBus

    async def call(
        self, member: str, signature: str = "", body: list[Any] | None = None, *,
        interactive: bool = False, interface: str = INTERFACE,
    ) -> Message:  # fmt: skip
        flags = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION if interactive else MessageFlag.NONE
        return await self.bus.call(
            Message(
                destination=BUS_NAME, path=OBJECT_PATH, interface=interface, member=member,
                signature=signature, body=body or [], flags=flags,
            )
        )  # fmt: skip

    async def ok(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        reply = await self.call(member, signature, body)
        assert reply.message_type is MessageType.METHOD_RETURN, (reply.error_name, reply.body)
        return reply.body

    async def error(self, member: str, signature: str = "", body: list[Any] | None = None) -> str:
        reply = await self.call(member, signature, body)
        assert reply.message_type is MessageType.ERROR, f"{member} unexpectedly succeeded"
        return reply.error_name


@contextlib.asynccontextmanager
async def running_service(
    address: str, *, trust_root: bool = False, engine: FakeEngine | None = None
) -> AsyncIterator[tuple[Service, FakeEngine, Client]]:
    engine = engine or FakeEngine()
    service = Service(engine, Options(state_file=None, address=address, trust_root=trust_root))
    await service.start()
    client_bus = await MessageBus(bus_address=address).connect()
    try:
        yield service, engine, Client(client_bus)
    finally:
        client_bus.disconnect()
        await service.stop()
