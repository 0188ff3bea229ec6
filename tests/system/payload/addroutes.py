#!/usr/bin/python3
"""Many routes through AddRoutes, run INSIDE the system-test container with Debian's own
python3-dbus-fast (1.84 on Debian 12, 2.44 on Debian 13) on the system bus.

  addroutes.py TOTAL BATCH SOURCE FIRST_GROUP IIF OIF [--temporary]
      TOTAL (S,G) routes SOURCE -> FIRST_GROUP, FIRST_GROUP+1, ... (IPv4), IIF to OIF,
      in AddRoutes calls of BATCH routes (persistent unless --temporary); prints
      "<routes added so far> <seconds of that call>" per call. Exit 1 on an error reply.
(`mfc-dbus batch` parses its lines in the client: ~9 s for 10,000, too slow here.)
"""

import asyncio
import ipaddress
import sys
import time

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

NAME = PATH = "org.mfc.Forwarding1"


async def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--temporary"]
    total, batch, source, first, iif, oif = int(args[0]), int(args[1]), *args[2:6]
    persistent = "--temporary" not in sys.argv
    base = int(ipaddress.IPv4Address(first))
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    for start in range(0, total, batch):
        routes = [
            [source, str(ipaddress.IPv4Address(base + n)), iif, [oif], {}]
            for n in range(start, min(start + batch, total))
        ]
        began = time.monotonic()
        reply = await bus.call(
            Message(
                destination=NAME,
                path="/" + PATH.replace(".", "/"),
                interface=NAME,
                member="AddRoutes",
                signature="a(sssasa{sv})a{sv}",
                body=[routes, {"persistent": Variant("b", persistent)}],
            )
        )
        if reply.message_type != MessageType.METHOD_RETURN:
            print("error", reply.error_name, reply.body, file=sys.stderr)
            return 1
        print(start + len(routes), f"{time.monotonic() - began:.3f}", flush=True)
    bus.disconnect()
    return 0


sys.exit(asyncio.run(main()))
