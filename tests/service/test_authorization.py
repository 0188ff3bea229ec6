"""Polkit per method (python-dbusmock's polkitd): every mutating method is refused
without its action and works with it; reads need nothing; the decorator guard."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import MessageType, Variant

from mfc_dbus import contract
from mfc_dbus.engine.joins import Join, make_join_key
from mfc_dbus.model import Family, Route, VifConfig, make_route_key
from mfc_dbus.names import (
    ACTION_MANAGE_GROUPS,
    ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_ROUTES,
    DBUS_ACCESS_DENIED,
    DBUS_PROPERTIES_INTERFACE,
    INTERFACE,
)
from mfc_dbus.service.auth import public
from mfc_dbus.service.dispatch import handlers_of

from .harness import running_service

GROUP = "233.252.0.1"
ROUTE_ARGS = ["192.0.2.1", GROUP, "up0", ["down0"], {}]


def _prepare_route(engine) -> None:
    engine.add_route(Route(make_route_key("192.0.2.1", GROUP), "up0", ("down0",)))


def _outputs(engine) -> tuple[str, ...]:
    return engine.routes[make_route_key("192.0.2.1", GROUP)].outputs


def _prepare_vif(engine) -> None:
    engine.add_vif(VifConfig("down1", Family.IPV4))


def _prepare_join(engine) -> None:
    engine.join_group(Join(make_join_key("down0", "", GROUP)))


SIGNATURE = {name: spec.in_signature for name, spec in contract.load().methods.items()}
# member, body, the polkit action it needs, set-up, check that the change happened
MUTATING = [
    ("AddRoute", ROUTE_ARGS, ACTION_MANAGE_ROUTES, None,
     lambda e: e.route_count == 1),
    ("AddRoutes", [[ROUTE_ARGS, ["", GROUP, "up0", ["down1"], {}]], {}],
     ACTION_MANAGE_ROUTES, None, lambda e: e.route_count == 2),
    ("RemoveRoute", ["192.0.2.1", GROUP, {}], ACTION_MANAGE_ROUTES, _prepare_route,
     lambda e: e.route_count == 0),
    ("AddOutputs", ["192.0.2.1", GROUP, ["down1"], {}], ACTION_MANAGE_ROUTES, _prepare_route,
     lambda e: _outputs(e) == ("down0", "down1")),
    ("RemoveOutputs", ["192.0.2.1", GROUP, ["down0"], {}], ACTION_MANAGE_ROUTES,
     _prepare_route, lambda e: _outputs(e) == ()),
    ("Flush", [{}], ACTION_MANAGE_ROUTES, _prepare_route, lambda e: e.route_count == 0),
    ("AddVif", ["down0", {"ttl_threshold": Variant("u", 4)}],
     ACTION_MANAGE_INTERFACES, None, lambda e: e.vif_count == 1),
    ("RemoveVif", ["down1", {}], ACTION_MANAGE_INTERFACES, _prepare_vif,
     lambda e: e.vif_count == 0),
    ("JoinGroup", ["down0", "", GROUP, {}], ACTION_MANAGE_GROUPS, None,
     lambda e: e.group_count == 1),
    ("LeaveGroup", ["down0", "", GROUP, {}], ACTION_MANAGE_GROUPS, _prepare_join,
     lambda e: e.group_count == 0),
    ("Reload", [], ACTION_MANAGE_ROUTES, None, lambda e: e.reloads == 1),
]  # fmt: skip
OTHER_ACTION = {
    ACTION_MANAGE_ROUTES: ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_INTERFACES: ACTION_MANAGE_ROUTES,
    ACTION_MANAGE_GROUPS: ACTION_MANAGE_ROUTES,
}


def test_every_mutating_method_is_covered() -> None:
    methods = contract.load().methods
    assert {name for name, *_ in MUTATING} == {
        name for name, spec in methods.items() if spec.action is not None
    }
    assert {(name, action) for name, _b, action, *_ in MUTATING} == {
        (name, methods[name].action) for name, *_ in MUTATING
    }


@pytest.mark.parametrize("member,body,action,prepare,changed", MUTATING,
                         ids=[m[0] for m in MUTATING])  # fmt: skip
def test_refused_without_its_action_allowed_with_it(
    bus, polkit, member, body, action, prepare, changed
) -> None:
    signature = SIGNATURE[member]

    async def scenario() -> None:
        async with running_service(bus.address) as (_service, engine, client):
            if prepare:
                prepare(engine)
            before = (engine.route_count, engine.vif_count, engine.reloads)
            # Nothing allowed, then only the *other* action: refused, nothing changed.
            for allowed in ([], [OTHER_ACTION[action]]):
                await asyncio.to_thread(polkit.set_allowed, allowed)
                assert await client.error(member, signature, body) == DBUS_ACCESS_DENIED
                assert (engine.route_count, engine.vif_count, engine.reloads) == before
            await asyncio.to_thread(polkit.set_allowed, [action])
            await client.ok(member, signature, body)
            assert changed(engine)

    asyncio.run(scenario())


def test_reads_need_no_authorization(bus, polkit) -> None:
    async def scenario() -> None:
        async with running_service(bus.address) as (_service, engine, client):
            _prepare_route(engine)
            _prepare_vif(engine)
            [routes] = await client.ok("ListRoutes", "a{sv}", [{}])
            assert [(r[0], r[1], r[2], r[3]) for r in routes] == [
                ("192.0.2.1", GROUP, "up0", ["down0"])
            ]
            assert routes[0][4]["state"].value == "installed"
            assert routes[0][4]["owner"].value == ""
            [vifs] = await client.ok("ListVifs", "a{sv}", [{"family": Variant("s", "ipv4")}])
            assert [(v[0], v[2]["explicit"].value) for v in vifs] == [("down1", True)]
            [props] = await _get_all(client)
            assert props["RouteCount"].value == 1 and props["VifCount"].value == 1
            assert props["Families"].value == ["ipv4", "ipv6"]

    asyncio.run(scenario())


async def _get_all(client):
    reply = await client.call("GetAll", "s", [INTERFACE], interface=DBUS_PROPERTIES_INTERFACE)
    assert reply.message_type is MessageType.METHOD_RETURN
    return reply.body


def test_root_is_allowed_without_polkit_round_trip(bus, polkit) -> None:
    """trust_root (the default): uid 0 passes even though polkit allows nothing."""

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            await client.ok("AddRoute", SIGNATURE["AddRoute"], ROUTE_ARGS)
            assert engine.route_count == 1

    asyncio.run(scenario())


def test_polkit_absent_only_root_is_allowed(root, caplog) -> None:
    """No polkitd on the bus: root (even without the fast path) may, others may not."""
    from mfc_lab.bus import PrivateBus
    from mfc_lab.polkit import ThrowawayUser

    with PrivateBus() as plain_bus, ThrowawayUser() as user:

        async def scenario() -> None:
            async with running_service(plain_bus.address) as (_s, engine, client):
                await client.ok("AddRoute", SIGNATURE["AddRoute"], ROUTE_ARGS)
                result = await asyncio.to_thread(
                    user.run,
                    ["busctl", f"--address={plain_bus.address}", "call", "org.mfc.Forwarding1",
                     "/org/mfc/Forwarding1", INTERFACE, "Flush", "a{sv}", "0"],
                )  # fmt: skip
                assert result.returncode != 0
                assert "Access denied" in result.stderr
                assert "polkitd is not running" in caplog.text
                assert engine.route_count == 1

        asyncio.run(scenario())


def test_marks_must_agree_with_the_contract() -> None:
    """A handler for a method the XML gives a polkit action must not be @public, a
    read must be @public, and every method needs a handler: checked at build time."""
    small = contract.parse(
        '<node><interface name="x.Y">'
        '<method name="Change"><annotation name="org.mfc.Forwarding1.PolkitAction" '
        'value="x.change"/></method><method name="Read"/></interface></node>',
        "x.Y",
    )

    class Unmarked:
        def Change(self, call):  # pragma: no cover - never called
            return lambda: None

        def Read(self, call):  # pragma: no cover - never called
            return []

    with pytest.raises(TypeError, match="Read: the contract names no polkit action and it is"):
        handlers_of(Unmarked(), small)

    class PublicChange(Unmarked):
        @public
        def Change(self, call):  # pragma: no cover - never called
            return None

        @public
        def Read(self, call):  # pragma: no cover - never called
            return []

    with pytest.raises(TypeError, match="polkit action x.change but the handler is @public"):
        handlers_of(PublicChange(), small)

    class Missing:
        @public
        def Read(self, call):  # pragma: no cover - never called
            return []

    with pytest.raises(TypeError, match="no handler for Change"):
        handlers_of(Missing(), small)

    class Fine(Unmarked):
        @public
        def Read(self, call):  # pragma: no cover - never called
            return []

    assert set(handlers_of(Fine(), small)) == {"Change", "Read"}


def test_guarded_engine_refuses_changes_outside_an_authorized_call() -> None:
    """A handler that forgot `await authorize()` cannot reach the engine's mutators."""
    from mfc_dbus.errors import AccessDenied
    from mfc_dbus.service.auth import Call, GuardedEngine, changing

    from .fake_engine import FakeEngine

    engine = FakeEngine()
    guarded = GuardedEngine(engine)
    route = Route(make_route_key("192.0.2.1", GROUP), "up0", ("down0",))
    assert guarded.route_count == 0  # reads pass
    for name in GuardedEngine.MUTATORS:
        with pytest.raises(AccessDenied, match=f"engine.{name} called without authorization"):
            getattr(guarded, name)(route)
    call = Call(message=None, member="AddRoute", action=ACTION_MANAGE_ROUTES)  # type: ignore
    with pytest.raises(AccessDenied, match="AddRoute was not authorized"):
        with changing(call):
            guarded.add_route(route)  # pragma: no cover - never reached
    call.uid = 1000
    with changing(call):
        guarded.add_route(route)
    with pytest.raises(AccessDenied):
        guarded.add_route(route)  # the call is over
    assert engine.route_count == 1
