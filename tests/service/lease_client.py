"""A client that adds a lease route, says "ready", and holds its bus connection until
stdin closes or it is killed (used to show the lease ending with the client)."""

from __future__ import annotations

import asyncio
import sys

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from mfc_dbus.contract import load
from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH

ADD_ROUTE = load().methods["AddRoute"]


async def main(address: str, source: str, group: str, input: str, *outputs: str) -> int:
    bus = await MessageBus(bus_address=address).connect()
    reply = await bus.call(
        Message(
            destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member=ADD_ROUTE.name,
            signature=ADD_ROUTE.in_signature,
            body=[source, group, input, list(outputs), {"lease": Variant("b", True)}],
        )
    )  # fmt: skip
    if reply.message_type is not MessageType.METHOD_RETURN:
        print(f"error {reply.error_name} {reply.body}", flush=True)
        return 1
    print(f"ready {bus.unique_name}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
