"""Signals, PropertiesChanged, leases, audit and Reload against the fake engine."""

from __future__ import annotations

import asyncio
import logging

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from mfc_dbus.model import Route, make_route_key
from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_dbus.service.audit import AUDIT_LOGGER
from mfc_dbus.service.auth import Call
from mfc_dbus.service.daemon import Options, bus_address, parse_args

from .harness import Client, running_service
from .signals import Subscriber

GROUP = "233.252.0.1"


def test_signals_and_properties_for_every_change(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            sub = await Subscriber.connect(bus.address)
            try:
                await client.ok("AddRoute", "sssasa{sv}", ["", GROUP, "up0", ["down0"], {}])
                added = await sub.wait_for("RouteAdded", "*", GROUP)
                assert added == ["*", GROUP, "up0", ["down0"], 0, "ipv4"]
                changed = await sub.wait_for("PropertiesChanged", INTERFACE)
                assert changed[1]["RouteCount"].value == 1
                # The same (S,G) in another table is another route: the signal says which.
                table_7 = {"table": Variant("u", 7)}
                await client.ok("AddRoute", "sssasa{sv}", ["", GROUP, "up0", ["down1"], table_7])
                assert await sub.wait_for("RouteAdded", "*", GROUP, "up0", ["down1"]) == [
                    "*", GROUP, "up0", ["down1"], 7, "ipv4",
                ]  # fmt: skip
                await client.ok("AddVif", "sa{sv}", ["down1", table_7])
                assert await sub.wait_for("VifAdded", "down1") == ["down1", 0, "ipv4", 7]
                await client.ok("RemoveVif", "sa{sv}", ["down1", table_7])
                await sub.wait_for("VifRemoved", "down1", 0, "ipv4", 7)
                # A change the engine makes on its own (expiry, hotplug) is signalled too.
                engine.remove_route(make_route_key("", GROUP, 7))
                assert await sub.wait_for("RouteRemoved", "*", GROUP) == [
                    "*", GROUP, "up0", 7, "ipv4",
                ]  # fmt: skip
                await client.ok("RemoveRoute", "ssa{sv}", ["", GROUP, {}])
                assert await sub.wait_for("RouteRemoved", "*", GROUP, "up0", 0) == [
                    "*", GROUP, "up0", 0, "ipv4",
                ]  # fmt: skip
            finally:
                sub.close()

    asyncio.run(scenario())


def test_reply_leaves_before_the_calls_signals(bus, polkit) -> None:
    """The caller is released first; its signals follow on the same connection."""
    routes = [["", f"233.252.2.{n}", "up0", ["down0"], {}] for n in range(1, 201)]

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, _engine, _client):
            sub = await Subscriber.connect(bus.address)  # the caller subscribes itself
            order: list[str] = []
            sub.bus.add_message_handler(
                lambda m: order.append(
                    m.member if m.message_type is MessageType.SIGNAL else m.message_type.name
                )
            )
            try:
                reply = await sub.bus.call(
                    Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE,
                            member="AddRoutes", signature="a(sssasa{sv})a{sv}",
                            body=[routes, {}])
                )  # fmt: skip
                assert reply.message_type is MessageType.METHOD_RETURN, reply.body
                await sub.wait_for("RouteAdded", "*", "233.252.2.200")
                await sub.wait_for("PropertiesChanged", INTERFACE)
                first_signal = order.index("RouteAdded")
                assert order.index("METHOD_RETURN") < first_signal
                assert order.count("RouteAdded") == 200
            finally:
                sub.close()

    asyncio.run(scenario())


def test_batch_emits_one_properties_changed(bus, polkit) -> None:
    routes = [["", f"233.252.1.{n}", "up0", ["down0"], {}] for n in range(1, 51)]

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            sub = await Subscriber.connect(bus.address)
            try:
                [count] = await client.ok("AddRoutes", "a(sssasa{sv})a{sv}", [routes, {}])
                assert count == 50
                await sub.wait_for("RouteAdded", "*", "233.252.1.50")
                # A later change is the marker: its PropertiesChanged comes after any the
                # batch could still have sent, so the list below is complete.
                marker = ["", "233.252.1.99", "up0", ["down0"], {}]
                await client.ok("AddRoute", "sssasa{sv}", marker)
                await sub.wait_for("RouteAdded", "*", "233.252.1.99")
                await sub.wait_for(
                    "PropertiesChanged", INTERFACE, {"RouteCount": Variant("u", 51)}
                )
                changes = [b for m, b in sub.seen if m == "PropertiesChanged"]
                assert [c[1]["RouteCount"].value for c in changes] == [50, 51]
            finally:
                sub.close()

    asyncio.run(scenario())


def test_lease_routes_end_with_their_client(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            holder = Client(await MessageBus(bus_address=bus.address).connect())
            lease = {"lease": Variant("b", True)}
            await holder.ok("AddRoute", "sssasa{sv}", ["", GROUP, "up0", ["down0"], lease])
            await client.ok("AddRoute", "sssasa{sv}", ["", "233.252.0.2", "up0", ["down0"], {}])
            [routes] = await client.ok("ListRoutes", "a{sv}", [{}])
            owners = {r[1]: (r[4]["owner"].value, r[4]["persistent"].value) for r in routes}
            assert owners == {GROUP: (holder.bus.unique_name, False), "233.252.0.2": ("", True)}
            sub = await Subscriber.connect(bus.address)
            holder.bus.disconnect()
            await sub.wait_for("RouteRemoved", "*", GROUP)
            assert [k.texts[1] for k in engine.routes] == ["233.252.0.2"]
            sub.close()

    asyncio.run(scenario())


def test_lease_of_a_client_already_gone_is_dropped(bus, polkit) -> None:
    """The holder may leave while its call waits for polkit: the route must not leak."""

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (service, engine, _c):
            route = Route(make_route_key("", GROUP), "up0", ("down0",), False, ":1.999999")
            engine.add_route(route)
            await service.leases._confirm(":1.999999")
            assert engine.route_count == 0

    asyncio.run(scenario())


def test_audit_line_names_uid_method_and_arguments(bus, polkit, caplog) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, _e, client):
            await client.ok("AddRoute", "sssasa{sv}", ["192.0.2.1", GROUP, "up0", ["down0"], {}])
            await client.ok("Reload")

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
    assert any(
        "uid=0" in line and "AddRoute" in line and f"(192.0.2.1, {GROUP}) in up0 out down0" in line
        for line in lines
    ), lines
    assert any("uid=0" in line and "Reload" in line for line in lines), lines


def test_shutdown_writes_the_audit_lines_still_queued(bus, polkit, caplog) -> None:
    """Audit lines are written after the reply; one queued when SIGTERM comes is kept."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    message = Message(sender=":1.42", path=OBJECT_PATH, interface=INTERFACE, member="AddRoute")

    async def scenario() -> list[str]:
        async with running_service(bus.address, trust_root=True) as (service, _e, _c):
            service.interface.emitter.audit(
                Call(message, "AddRoute", "x", uid=0), "queued at the stop"
            )
        # Read before asyncio.run's clean-up gives the loop more turns.
        return [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]

    lines = asyncio.run(scenario())
    assert "uid=0 sender=:1.42 AddRoute: queued at the stop" in lines, lines


def test_sighup_reloads(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (service, engine, _c):
            service.reload()
            assert engine.reloads == 1

    asyncio.run(scenario())


def test_command_line_and_bus_choice(monkeypatch) -> None:
    options, level = parse_args(["--state-file", "none", "--log-level", "debug"])
    assert options.state_file is None and level == "debug"
    monkeypatch.setenv("DBUS_STARTER_BUS_TYPE", "system")
    monkeypatch.setenv("DBUS_STARTER_ADDRESS", "unix:path=/tmp/x")
    assert bus_address(Options()) == "unix:path=/tmp/x"
    assert bus_address(Options(address="unix:path=/tmp/y")) == "unix:path=/tmp/y"


def test_a_100000_route_batch_reaches_a_subscriber_and_the_service_stays(bus, polkit) -> None:
    """100,000 RouteAdded signals in one burst: every one reaches a subscriber, in
    order, and the service keeps its connection (dbus-fast alone would drop it)."""
    count = 100_000
    routes = [[f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", GROUP, "up0", ["down0"], {}]
              for n in range(count)]  # fmt: skip

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (service, _e, client):
            sub = await Subscriber.connect(bus.address)
            try:
                assert await client.ok("AddRoutes", "a(sssasa{sv})a{sv}", [routes, {}]) == [count]
                async with asyncio.timeout(120):
                    while sum(m == "RouteAdded" for m, _ in sub.seen) < count:
                        sub._changed.clear()
                        await sub._changed.wait()
                sources = [body[0] for m, body in sub.seen if m == "RouteAdded"]
                assert sources == [route[0] for route in routes]
                assert service.bus is not None and service.bus.connected
                [listed] = await client.ok("ListRoutes", "a{sv}", [{}])
                assert len(listed) == count
            finally:
                sub.close()

    asyncio.run(scenario())
