"""Group joins over the bus against the fake engine: signals, GroupCount, ListGroups'
details, a lease join ending with its client, and named errors."""

from __future__ import annotations

import asyncio

from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from mfc_dbus.errors import InvalidArgument, NotFound
from mfc_dbus.names import INTERFACE

from .harness import Client, running_service
from .signals import Subscriber

GROUP = "233.252.0.1"
JOIN = "sssa{sv}"


def test_join_and_leave_signal_and_list(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            sub = await Subscriber.connect(bus.address)
            try:
                table_3 = {"table": Variant("u", 3)}
                await client.ok("JoinGroup", JOIN, ["up0", "192.0.2.1", "232.1.1.1", table_3])
                assert await sub.wait_for("GroupJoined", "up0") == [
                    "up0", "192.0.2.1", "232.1.1.1", 3, "ipv4",
                ]  # fmt: skip
                changed = await sub.wait_for("PropertiesChanged", INTERFACE)
                assert changed[1]["GroupCount"].value == 1
                await client.ok("JoinGroup", JOIN, ["down0", "0.0.0.0", GROUP, {}])  # any
                [groups] = await client.ok("ListGroups", "a{sv}", [{"table": Variant("u", 3)}])
                ((interface, source, group, details),) = groups
                assert (interface, source, group) == ("up0", "192.0.2.1", "232.1.1.1")
                plain = {key: value.value for key, value in details.items()}
                assert plain == {
                    "state": "joined", "interfaces": ["up0"], "memberships": 1, "error": "",
                    "persistent": True, "owner": "", "table": 3, "family": "ipv4",
                    "origin": "",
                }  # fmt: skip
                await client.ok("LeaveGroup", JOIN, ["down0", "*", GROUP, {}])
                assert await sub.wait_for("GroupLeft", "down0") == [
                    "down0", "*", GROUP, 0, "ipv4",
                ]  # fmt: skip
                assert engine.group_count == 1
            finally:
                sub.close()

    asyncio.run(scenario())


def test_a_lease_join_ends_with_its_client(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            holder = Client(await MessageBus(bus_address=bus.address).connect())
            lease = {"lease": Variant("b", True)}
            await holder.ok("JoinGroup", JOIN, ["up0", "", GROUP, lease])
            [groups] = await client.ok("ListGroups", "a{sv}", [{}])
            assert groups[0][3]["owner"].value == holder.bus.unique_name
            assert groups[0][3]["persistent"].value is False
            sub = await Subscriber.connect(bus.address)
            holder.bus.disconnect()
            await sub.wait_for("GroupLeft", "up0", "*", GROUP)
            assert engine.group_count == 0
            sub.close()

    asyncio.run(scenario())


def test_bad_joins_are_named(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, _engine, client):
            both = {"lease": Variant("b", True), "persistent": Variant("b", True)}
            cases = [
                (["up0", "", "192.0.2.9", {}], "JoinGroup: group '192.0.2.9' is not a multicast"),
                (["up0", "", GROUP, both], "lease=true and persistent=true conflict"),
                (["up0", "", GROUP, {"ttl": Variant("u", 1)}], "unknown option 'ttl'"),
                (["bad name!", "", GROUP, {}], "bad name!"),
            ]
            for args, text in cases:
                reply = await client.call("JoinGroup", JOIN, args)
                assert reply.error_name == InvalidArgument.dbus_name, reply.body
                assert text in reply.body[0], reply.body
            reply = await client.call("LeaveGroup", JOIN, ["up0", "", GROUP, {}])
            assert reply.error_name == NotFound.dbus_name and "no join" in reply.body[0]

    asyncio.run(scenario())
