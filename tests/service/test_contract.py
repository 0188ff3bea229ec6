"""The checked-in XML is the contract: live introspection equals it, every member,
argument and option key is documented, and each bad input maps to its error name."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from dbus_fast import Variant

from mfc_dbus.errors import ALL_ERRORS, InvalidArgument, MfcError
from mfc_dbus.names import ERROR_PREFIX, INTERFACE, INTERFACE_XML
from mfc_dbus.service import options as opts
from mfc_lab.bus import data_file

from .harness import running_service

DOC = "org.gtk.GDBus.DocString"
CONTRACT = data_file("dbus", INTERFACE_XML)


def _interface(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    [element] = [i for i in root.iter("interface") if i.get("name") == INTERFACE]
    return element


def _normalize(element: ET.Element) -> object:
    """Members by name; args in order; annotations other than docs; no whitespace."""

    def annotations(node: ET.Element) -> dict[str, str]:
        return {
            a.get("name"): a.get("value")
            for a in node.findall("annotation")
            if not a.get("name", "").startswith(DOC)
        }

    def args(node: ET.Element) -> list[tuple]:
        return [(a.get("name"), a.get("type"), a.get("direction")) for a in node.findall("arg")]

    return {
        kind: {
            node.get("name"): (args(node), annotations(node), node.get("type"), node.get("access"))
            for node in element.findall(kind)
        }
        for kind in ("method", "signal", "property")
    } | {"annotations": annotations(element)}


def test_live_introspection_equals_the_contract(bus, polkit) -> None:
    async def scenario() -> str:
        async with running_service(bus.address):
            result = await asyncio.to_thread(
                bus.busctl, "introspect", "--xml-interface", "org.mfc.Forwarding1",
                "/org/mfc/Forwarding1",
            )  # fmt: skip
            return result.stdout

    live = _normalize(_interface(asyncio.run(scenario())))
    assert live == _normalize(_interface(CONTRACT.read_text()))


def test_everything_is_documented() -> None:
    interface = _interface(CONTRACT.read_text())

    def doc(node: ET.Element) -> str:
        texts = [a.get("value") for a in node.findall("annotation") if a.get("name") == DOC]
        assert texts and texts[0].strip(), f"{node.tag} {node.get('name')} has no doc"
        return texts[0]

    doc(interface)
    for kind in ("method", "signal", "property"):
        for node in interface.findall(kind):
            doc(node)
            for arg in node.findall("arg"):
                doc(arg)
    options_doc = {
        (m.get("name"), a.get("name")): doc(a)
        for m in interface.findall("method")
        for a in m.findall("arg")
        if a.get("type") == "a{sv}"
    }
    specs = {
        ("AddRoute", "options"): opts.ROUTE_OPTIONS,
        ("AddRoutes", "options"): opts.ROUTE_OPTIONS,
        ("RemoveRoute", "options"): opts.REMOVE_ROUTE_OPTIONS,
        ("Flush", "options"): opts.FLUSH_OPTIONS,
        ("ListRoutes", "filter"): opts.LIST_FILTER,
        ("AddVif", "options"): opts.ADD_VIF_OPTIONS,
        ("RemoveVif", "options"): opts.REMOVE_VIF_OPTIONS,
        ("ListVifs", "filter"): opts.LIST_FILTER,
    }
    assert set(specs) == set(options_doc)
    for where, spec in specs.items():
        for key, signature in spec.items():
            assert f"{key} ({signature}" in options_doc[where], (where, key)
    for cls in ALL_ERRORS:
        if cls.dbus_name.startswith(ERROR_PREFIX) and cls is not MfcError:
            assert cls.dbus_name.removeprefix(ERROR_PREFIX) in doc(interface), cls


ROUTE = "sssasa{sv}"
BAD_INPUT = [
    ("bad group", "AddRoute", ROUTE, ["192.0.2.1", "10.0.0.1", "up0", ["down0"], {}]),
    ("link-local group", "AddRoute", ROUTE, ["", "224.0.0.5", "up0", ["down0"], {}]),
    ("bad source", "AddRoute", ROUTE, ["192.0.2.300", "233.252.0.1", "up0", ["down0"], {}]),
    ("mixed families", "AddRoute", ROUTE, ["192.0.2.1", "ff3e::1", "up0", ["down0"], {}]),
    ("bad interface", "AddRoute", ROUTE, ["", "233.252.0.1", "up 0", ["down0"], {}]),
    ("unknown option", "AddRoute", ROUTE,
     ["", "233.252.0.1", "up0", ["down0"], {"colour": Variant("s", "red")}]),
    ("wrong option type", "AddRoute", ROUTE,
     ["", "233.252.0.1", "up0", ["down0"], {"table": Variant("s", "1")}]),
    ("lease and persistent", "AddRoute", ROUTE,
     ["", "233.252.0.1", "up0", ["down0"],
      {"lease": Variant("b", True), "persistent": Variant("b", True)}]),
    ("bad batch route", "AddRoutes", "a(sssasa{sv})a{sv}",
     [[["", "233.252.0.1", "up0", ["down0"], {}], ["", "nope", "up0", [], {}]], {}]),
    ("bad family", "Flush", "a{sv}", [{"family": Variant("s", "ipx")}]),
    ("bad filter", "ListRoutes", "a{sv}", [{"state": Variant("s", "x")}]),
    ("ttl out of range", "AddVif", "sa{sv}", ["down0", {"ttl_threshold": Variant("u", 256)}]),
    ("remove missing route", "RemoveRoute", "ssa{sv}", ["", "233.252.0.9", {}]),
    ("remove missing vif", "RemoveVif", "sa{sv}", ["down0", {}]),
    ("missing interface", "AddRoute", ROUTE, ["", "233.252.0.1", "up0", ["nosuch0"], {}]),
]  # fmt: skip
EXPECTED = {
    "remove missing route": "NotFound",
    "remove missing vif": "NotFound",
    "missing interface": "NoSuchInterface",
}


@pytest.mark.parametrize("case,member,signature,body", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_has_its_error_name(bus, polkit, case, member, signature, body) -> None:
    async def scenario() -> tuple[str, str]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            reply = await client.call(member, signature, body)
            assert engine.route_count == 0  # all or nothing
            return reply.error_name, reply.body[0]

    name, message = asyncio.run(scenario())
    assert name == ERROR_PREFIX + EXPECTED.get(case, "InvalidArgument"), message
    if case in ("unknown option", "wrong option type"):
        assert "valid options: lease (b), persistent (b), table (u)" in message


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
            engine.list_routes = lambda *a: 1 / 0
            reply = await client.call("ListRoutes", "a{sv}", [{}])
            return reply.error_name, reply.body[0]

    name, message = asyncio.run(scenario())
    assert name == MfcError.dbus_name
    assert "ZeroDivisionError" in message and "Traceback" not in message
    assert "Traceback" in caplog.text or "ZeroDivisionError" in caplog.text
    assert InvalidArgument.dbus_name != name
