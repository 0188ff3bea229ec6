"""What the service answers: a wrong signature is InvalidArgs naming the expected one,
ObjectManager is not implemented, calls that name no interface find theirs, bad input
maps to its error name, and unexpected failures say nothing of the internals."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from dbus_fast import Message, MessageType, Variant

from mfc_dbus import contract
from mfc_dbus.errors import ALL_ERRORS, InvalidArgument, MfcError
from mfc_dbus.names import (
    BUS_NAME,
    BUS_POLICY_CONF,
    DBUS_INVALID_ARGS,
    DBUS_PEER_INTERFACE,
    DBUS_PROPERTIES_INTERFACE,
    DBUS_UNKNOWN_INTERFACE,
    DBUS_UNKNOWN_METHOD,
    ERROR_PREFIX,
    INTERFACE,
    OBJECT_PATH,
)
from mfc_dbus.service.dispatch import Dispatcher
from mfc_dbus.service.interface import Forwarding
from mfc_dbus.service.leases import Leases
from mfc_lab.bus import data_file

from .fake_engine import FakeEngine
from .harness import running_service

CONTRACT = contract.load()


def served() -> Dispatcher:
    """The dispatcher of a service on the fake engine, with no bus (see answer)."""
    engine = FakeEngine()
    served = Forwarding(engine, Leases(engine), CONTRACT)
    return Dispatcher(served, CONTRACT, authorizer=None, outbox=None)  # type: ignore[arg-type]


WRONG = [(name, "s" if spec.in_signature == "" else "") for name, spec in CONTRACT.methods.items()]


def test_a_wrong_signature_is_invalid_args_naming_the_expected_one(bus, polkit) -> None:
    standard = [
        (DBUS_PROPERTIES_INTERFACE, "Get", "s", "(ss)"),
        (DBUS_PROPERTIES_INTERFACE, "GetAll", "", "(s)"),
        (DBUS_PEER_INTERFACE, "Ping", "s", "()"),
        ("org.freedesktop.DBus.Introspectable", "Introspect", "s", "()"),
    ]

    async def scenario() -> list[tuple[str, str, str]]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            answers = []
            for member, signature in WRONG:
                reply = await client.call(member, signature, ["x"] if signature else [])
                answers.append((reply.error_name, reply.body[0], CONTRACT.methods[member]))
            for interface, member, signature, expected in standard:
                body = ["x"] if signature else []
                reply = await client.call(member, signature, body, interface=interface)
                answers.append((reply.error_name, reply.body[0], expected))
            assert engine.route_count == 0
            return answers

    for error, text, expected in asyncio.run(scenario()):
        if isinstance(expected, contract.MethodSpec):
            expected = f"{expected.name} takes ({expected.in_signature})"
        assert error == DBUS_INVALID_ARGS and expected in text, (error, text)


class _Answer:
    """An outbox that keeps the one answer the dispatcher sends."""

    def __init__(self) -> None:
        self.sent: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def send(self, message: Message) -> None:
        self.sent.set_result(message)


def answer(dispatcher: Dispatcher, message: Message) -> Message:
    """What the dispatcher answers to `message` (served in a later loop turn, as on a
    bus)."""

    async def scenario() -> Message:
        outbox = dispatcher._outbox = _Answer()  # type: ignore[assignment]
        assert dispatcher.handle(message) is True
        return await asyncio.wait_for(outbox.sent, 5)

    return asyncio.run(scenario())


def test_object_manager_is_not_implemented() -> None:
    """The bus policy refuses GetManagedObjects; past it, the object answers
    UnknownInterface, as for any interface it does not implement."""
    call = Message(
        destination=BUS_NAME, path=OBJECT_PATH, interface="org.freedesktop.DBus.ObjectManager",
        member="GetManagedObjects", serial=5, sender=":1.9",
    )  # fmt: skip
    answered = answer(served(), call)
    assert answered.error_name == DBUS_UNKNOWN_INTERFACE and answered.reply_serial == 5
    assert "does not implement org.freedesktop.DBus.ObjectManager" in answered.body[0]
    policy = ET.parse(data_file("dbus", BUS_POLICY_CONF)).getroot()
    allowed = {a.get("send_interface") for a in policy.iter("allow") if a.get("send_interface")}
    assert "org.freedesktop.DBus.ObjectManager" not in allowed


# -- bad input --------------------------------------------------------------------------
ROUTE = CONTRACT.methods["AddRoute"].in_signature
BAD_INPUT = [
    ("bad group", "AddRoute", ["192.0.2.1", "10.0.0.1", "up0", ["down0"], {}]),
    ("link-local group", "AddRoute", ["", "224.0.0.5", "up0", ["down0"], {}]),
    ("bad source", "AddRoute", ["192.0.2.300", "233.252.0.1", "up0", ["down0"], {}]),
    ("mixed families", "AddRoute", ["192.0.2.1", "ff3e::1", "up0", ["down0"], {}]),
    ("bad interface", "AddRoute", ["", "233.252.0.1", "up 0", ["down0"], {}]),
    ("unknown option", "AddRoute",
     ["", "233.252.0.1", "up0", ["down0"], {"colour": Variant("s", "red")}]),
    ("wrong option type", "AddRoute",
     ["", "233.252.0.1", "up0", ["down0"], {"table": Variant("s", "1")}]),
    ("lease and persistent", "AddRoute",
     ["", "233.252.0.1", "up0", ["down0"],
      {"lease": Variant("b", True), "persistent": Variant("b", True)}]),
    ("bad batch route", "AddRoutes",
     [[["", "233.252.0.1", "up0", ["down0"], {}], ["", "nope", "up0", [], {}]], {}]),
    ("bad family", "Flush", [{"family": Variant("s", "ipx")}]),
    ("bad filter", "ListRoutes", [{"state": Variant("s", "x")}]),
    ("remove missing route", "RemoveRoute", ["", "233.252.0.9", {}]),
    ("remove with bad input", "RemoveRoute",
     ["", "233.252.0.9", {"input": Variant("s", "up/0")}]),
    ("remove missing vif", "RemoveVif", ["down0", {}]),
    ("missing interface", "AddRoute", ["", "233.252.0.1", "up0", ["nosuch0"], {}]),
]  # fmt: skip
EXPECTED = {
    "remove missing route": "NotFound",
    "remove missing vif": "NotFound",
    "missing interface": "NoSuchInterface",
}


@pytest.mark.parametrize("case,member,body", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_has_its_error_name(bus, polkit, case, member, body) -> None:
    async def scenario() -> tuple[str, str]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            reply = await client.call(member, CONTRACT.methods[member].in_signature, body)
            assert engine.route_count == 0  # all or nothing
            return reply.error_name, reply.body[0]

    name, message = asyncio.run(scenario())
    assert name == ERROR_PREFIX + EXPECTED.get(case, "InvalidArgument"), message
    if case in ("unknown option", "wrong option type"):
        assert "valid options: lease (b), persistent (b), replace (b), table (u)" in message


@pytest.mark.parametrize("error", [c for c in ALL_ERRORS], ids=lambda c: c.__name__)
def test_every_engine_error_keeps_its_name(bus, polkit, error) -> None:
    """The boundary maps each typed error to its own D-Bus name, message intact."""

    async def scenario() -> tuple[str, str]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):

            def fail(route, **_):
                raise error("the offending value is 42; use 1 to 32")

            engine.add_route = fail
            reply = await client.call("AddRoute", ROUTE, ["", "233.252.0.1", "up0", ["down0"], {}])
            return reply.error_name, reply.body[0]

    name, message = asyncio.run(scenario())
    assert (name, message) == (error.dbus_name, "the offending value is 42; use 1 to 32")


def test_unexpected_exception_is_failed_without_internals(bus, polkit, caplog) -> None:
    async def scenario() -> tuple[str, str]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            engine.list_page = lambda *a, **k: 1 / 0
            reply = await client.call("ListRoutes", "a{sv}", [{}])
            return reply.error_name, reply.body[0]

    name, message = asyncio.run(scenario())
    assert name == MfcError.dbus_name
    assert "ZeroDivisionError" in message and "Traceback" not in message
    assert "Traceback" in caplog.text or "ZeroDivisionError" in caplog.text
    assert InvalidArgument.dbus_name != name


def test_calls_that_name_no_interface_find_theirs() -> None:
    dispatcher = served()
    serials = iter(range(1, 100))

    def call(member: str, signature: str = "", body: list | None = None) -> Message:
        message = Message(
            destination=BUS_NAME, path=OBJECT_PATH, member=member, signature=signature,
            body=body or [], serial=next(serials), sender=":1.9",
        )  # fmt: skip
        return answer(dispatcher, message)

    assert call("Ping").message_type is MessageType.METHOD_RETURN
    assert INTERFACE in call("Introspect").body[0]
    assert call("GetAll", "s", [INTERFACE]).body[0]["Version"].signature == "s"
    assert call("ListVifs", "a{sv}", [{}]).body == [[]]
    missing = call("Frobnicate")
    assert missing.error_name == DBUS_UNKNOWN_METHOD
    assert "no method Frobnicate at /org/mfc/Forwarding1" in missing.body[0]
