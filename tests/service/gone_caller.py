"""A caller that sends AddRoute without expecting a reply and leaves the bus at once.

    gone_caller.py ADDRESS GROUP [--known-first KNOWN_GROUP]

With --known-first it first adds KNOWN_GROUP with a normal call (so the service learns
its uid), prints "known" and waits for a line on stdin. Then it sends AddRoute for
GROUP with NO_REPLY_EXPECTED, disconnects, waits (on a second connection) until the
bus has seen its name go, and prints that name.
"""

from __future__ import annotations

import asyncio
import sys

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.contract import load
from mfc_dbus.names import (
    BUS_NAME,
    DBUS_DAEMON_INTERFACE,
    DBUS_DAEMON_NAME,
    DBUS_DAEMON_PATH,
    INTERFACE,
    OBJECT_PATH,
)

ADD_ROUTE = load().methods["AddRoute"]


def add_route(group: str, flags: MessageFlag = MessageFlag.NONE) -> Message:
    return Message(
        destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member=ADD_ROUTE.name,
        signature=ADD_ROUTE.in_signature, body=["", group, "up0", ["down0"], {}], flags=flags,
    )  # fmt: skip


async def main(address: str, group: str, *known: str) -> int:
    caller = await MessageBus(bus_address=address).connect()
    witness = await MessageBus(bus_address=address).connect()
    name = caller.unique_name
    gone = asyncio.get_running_loop().create_future()

    def on_message(message: Message) -> None:
        if message.member == "NameOwnerChanged" and message.body == [name, name, ""]:
            if not gone.done():
                gone.set_result(None)

    witness.add_message_handler(on_message)
    rule = f"type='signal',member='NameOwnerChanged',arg0='{name}'"
    await witness.call(
        Message(destination=DBUS_DAEMON_NAME, path=DBUS_DAEMON_PATH,
                interface=DBUS_DAEMON_INTERFACE, member="AddMatch", signature="s", body=[rule])
    )  # fmt: skip
    if known:
        reply = await caller.call(add_route(known[1]))
        if reply.message_type is not MessageType.METHOD_RETURN:
            print(f"error {reply.error_name} {reply.body}", flush=True)
            return 1
        print("known", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await caller.send(add_route(group, MessageFlag.NO_REPLY_EXPECTED))
    caller.disconnect()
    await asyncio.wait_for(gone, 10)
    print(name, flush=True)
    witness.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
