"""The checked-in XML is the contract and nothing restates it.

The live introspection is the XML, documentation included; every member, argument
and option key is documented; the service, the client and the tests' stand-ins take
their member names, signatures, option keys and polkit actions from it, and each of
them fails here when it drifts. (What the service answers: test_answers.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import xml.etree.ElementTree as ET

import pytest
from dbus_fast import Message, MessageType, SignatureTree, Variant

from mfc_dbus import client as client_module
from mfc_dbus import client_options, client_signals, contract
from mfc_dbus.engine import EngineAPI
from mfc_dbus.errors import ALL_ERRORS, InvalidArgument, MfcError
from mfc_dbus.names import (
    ACTION_MANAGE_GROUPS,
    ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_ROUTES,
    BUS_NAME,
    DBUS_PEER_INTERFACE,
    DBUS_PROPERTIES_INTERFACE,
    ERROR_PREFIX,
    INTERFACE,
    INTERFACE_XML,
    OBJECT_PATH,
    POLKIT_POLICY,
)
from mfc_dbus.service.dispatch import Dispatcher
from mfc_dbus.service.interface import Forwarding
from mfc_dbus.service.leases import Leases
from mfc_lab.bus import data_file

from .fake_engine import FakeEngine
from .harness import running_service

DOC = contract.DOC_ANNOTATION
CONTRACT_FILE = data_file("dbus", INTERFACE_XML)
CONTRACT = contract.load()


def _interface(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    [element] = [i for i in root.iter("interface") if i.get("name") == INTERFACE]
    return element


def _normalize(element: ET.Element) -> object:
    """Members by name; args in order; every annotation, documentation included."""

    def annotations(node: ET.Element) -> dict[str, str | None]:
        return {a.get("name", ""): a.get("value") for a in node.findall("annotation")}

    def args(node: ET.Element) -> list[tuple]:
        return [
            (a.get("name"), a.get("type"), a.get("direction"), annotations(a))
            for a in node.findall("arg")
        ]

    return {
        kind: {
            node.get("name"): (args(node), annotations(node), node.get("type"), node.get("access"))
            for node in element.findall(kind)
        }
        for kind in ("method", "signal", "property")
    } | {"annotations": annotations(element)}


def test_live_introspection_is_the_contract_documentation_included(bus, polkit) -> None:
    async def scenario() -> str:
        async with running_service(bus.address):
            result = await asyncio.to_thread(
                bus.busctl, "introspect", "--xml-interface", BUS_NAME, OBJECT_PATH
            )
            return result.stdout

    live = asyncio.run(scenario())
    assert _normalize(_interface(live)) == _normalize(_interface(CONTRACT_FILE.read_text()))
    assert {node.get("name") for node in ET.fromstring(live).iter("interface")} == {
        INTERFACE, DBUS_PEER_INTERFACE, DBUS_PROPERTIES_INTERFACE,
        "org.freedesktop.DBus.Introspectable",
    }  # fmt: skip


def test_the_shipped_copy_and_the_polkit_actions_agree() -> None:
    assert CONTRACT.xml == CONTRACT_FILE.read_text()  # mfc_dbus/ ships dbus/'s file
    policy = ET.parse(data_file("polkit", POLKIT_POLICY)).getroot()
    declared = {action.get("id") for action in policy.iter("action")}
    assert (
        CONTRACT.actions
        == declared
        == {
            ACTION_MANAGE_ROUTES,
            ACTION_MANAGE_INTERFACES,
            ACTION_MANAGE_GROUPS,
        }
    )


def test_everything_is_documented_and_every_key_typed() -> None:
    def doc(text: str, what: str) -> str:
        assert text.strip(), f"{what} has no documentation"
        return text

    doc(CONTRACT.doc, INTERFACE)
    members = [*CONTRACT.methods.values(), *CONTRACT.signals.values()]
    for member in members:
        doc(member.doc, member.name)
        args = member.args if isinstance(member, contract.SignalSpec) else member.inputs
        args += () if isinstance(member, contract.SignalSpec) else member.outputs
        for arg in args:
            text = doc(arg.doc, f"{member.name}({arg.name})")
            for key, signature in arg.keys.items():
                assert len(SignatureTree(signature).types) == 1, (member.name, key, signature)
                assert f"{key} ({signature}" in text, (member.name, arg.name, key)
    for prop in CONTRACT.properties.values():
        doc(prop.doc, prop.name)
    for cls in ALL_ERRORS:
        if cls.dbus_name.startswith(ERROR_PREFIX) and cls is not MfcError:
            assert cls.dbus_name.removeprefix(ERROR_PREFIX) in CONTRACT.doc, cls


def test_an_a_sv_argument_without_its_keys_is_refused() -> None:
    xml = '<node><interface name="x.Y"><method name="M"><arg name="o" type="a{sv}"/>'
    with pytest.raises(contract.ContractError, match=r"M\(o\).*org.mfc.Forwarding1.Keys"):
        contract.parse(xml + "</method></interface></node>", "x.Y")
    two_types = (
        '<node><interface name="x.Y"><method name="A"><arg name="o" type="a{sv}">'
        '<annotation name="org.mfc.Forwarding1.Keys" value="table:u"/></arg></method>'
        '<method name="B"><arg name="o" type="a{sv}">'
        '<annotation name="org.mfc.Forwarding1.Keys" value="table:s"/></arg></method>'
        "</interface></node>"
    )
    with pytest.raises(contract.ContractError, match="option 'table' is 'u'"):
        contract.parse(two_types, "x.Y")


# -- the service -------------------------------------------------------------------------
def _drifted(old: str, new: str) -> contract.Contract:
    xml = CONTRACT.xml
    assert old in xml, old
    return contract.parse(xml.replace(old, new, 1))


DRIFTS = {  # what changes in the XML, and what the service says
    "a method the service does not have": (
        '<method name="Reload">',
        '<method name="Frobnicate"/><method name="Reload">',
        "no handler for Frobnicate",
    ),
    "a method renamed": (
        '<method name="Reload">',
        '<method name="Reload2">',
        r"handlers the contract does not name: \['Reload'\]",
    ),
    "a signal argument the service cannot fill": (
        '<signal name="RouteRemoved">',
        '<signal name="RouteRemoved"><arg name="colour" type="s"/>',
        r"signal RouteRemoved: the service cannot fill \['colour'\]",
    ),
    "a signal the service does not send": (
        '<signal name="VifAdded">',
        '<signal name="VifChanged"/><signal name="VifAdded">',
        "signals: the contract names .*VifChanged",
    ),
    "a ListRoutes detail the service does not fill": (
        'value="packets:t bytes:t',
        'value="colour:s packets:t bytes:t',
        "ListRoutes: the contract names .*colour",
    ),
    "a ListVifs detail dropped": (
        ' out_bytes:t mrdisc:b"',
        ' out_bytes:t"',
        "ListVifs: the contract names .* the service fills .*mrdisc",
    ),
    "a property the service does not have": (
        '<property name="Version"',
        '<property name="Colour" type="s" access="read"/><property name="Version"',
        "properties: the contract names .*Colour",
    ),
    "a read that needs an action": (
        '<method name="ListVifs">',
        '<method name="ListVifs"><annotation name="org.mfc.Forwarding1.PolkitAction" '
        'value="org.mfc.Forwarding1.manage-interfaces"/>',
        "ListVifs: the contract names polkit action .* but the handler is @public",
    ),
}


def _served(contract_: contract.Contract) -> Dispatcher:
    engine = FakeEngine()
    served = Forwarding(engine, Leases(engine), contract_)
    return Dispatcher(served, contract_, authorizer=None, outbox=None)  # type: ignore[arg-type]


def test_the_service_is_built_from_the_contract() -> None:
    _served(CONTRACT)


@pytest.mark.parametrize("drift", list(DRIFTS), ids=list(DRIFTS))
def test_the_service_refuses_to_start_on_a_drifted_contract(drift: str) -> None:
    old, new, says = DRIFTS[drift]
    with pytest.raises(TypeError, match=says):
        _served(_drifted(old, new))


def test_the_service_takes_its_options_from_the_contract(bus, polkit) -> None:
    """Each argument with keys answers an unknown key with exactly the contract's keys."""
    targets = [
        (method, arg) for method in CONTRACT.methods.values() for arg in method.inputs if arg.keys
    ]
    colour = {"colour": Variant("s", "red")}

    def value(arg: contract.Arg, bad: bool) -> object:
        options = colour if bad else {}
        if arg.signature == "a{sv}":
            return options
        if arg.signature == "a(sssasa{sv})":
            return [["", "233.252.0.1", "up0", ["down0"], options]]
        return {"s": "down0", "as": ["down0"]}[arg.signature]

    async def scenario() -> list[tuple[str, str]]:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            answers = []
            for method, bad in targets:
                body = [value(arg, arg is bad) for arg in method.inputs]
                reply = await client.call(method.name, method.in_signature, body)
                answers.append((reply.error_name, reply.body[0]))
            assert engine.route_count == engine.vif_count == 0
            return answers

    answers = asyncio.run(scenario())
    assert len(answers) == len(targets) >= 9
    for (method, arg), (error, text) in zip(targets, answers, strict=True):
        valid = ", ".join(f"{key} ({sig})" for key, sig in sorted(arg.keys.items()))
        assert error == InvalidArgument.dbus_name, (method.name, text)
        assert f"unknown option 'colour' for {method.name}" in text, text
        assert text.endswith(f"valid options: {valid}"), (method.name, arg.name, text)


# -- the client ----------------------------------------------------------------------------
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_client_takes_the_contract() -> None:
    assert client_module.ACTION_BY_METHOD == {
        name: spec.action for name, spec in CONTRACT.methods.items() if spec.action
    }
    assert client_options.OPTION_SIGNATURES == CONTRACT.option_types()
    assert client_signals.SIGNAL_ARGS == {n: s.arg_names for n, s in CONTRACT.signals.items()}
    for name in CONTRACT.methods:
        assert inspect.iscoroutinefunction(getattr(client_module.MfcClient, _snake(name))), name
    fields = {f.name for f in dataclasses.fields(client_module.RouteInfo)}
    assert set(CONTRACT.methods["ListRoutes"].arg("routes").keys) <= fields
    fields = {f.name for f in dataclasses.fields(client_module.VifInfo)}
    assert set(CONTRACT.methods["ListVifs"].arg("vifs").keys) <= fields


SAMPLE = {"s": "x", "u": 7, "as": ["a", "b"]}


@pytest.mark.parametrize("name", list(CONTRACT.signals))
def test_the_client_reads_every_signal_argument(name: str) -> None:
    spec = CONTRACT.signals[name]
    message = Message(
        message_type=MessageType.SIGNAL, path=OBJECT_PATH, interface=INTERFACE, member=name,
        signature=spec.signature, body=[SAMPLE[arg.signature] for arg in spec.args],
    )  # fmt: skip
    event = client_module.event_from_message(message)
    assert event is not None
    assert event.args == {arg.name: SAMPLE[arg.signature] for arg in spec.args}


# -- the tests' stand-ins --------------------------------------------------------------
def test_the_fake_engine_has_the_engine_api() -> None:
    for name, member in inspect.getmembers(EngineAPI):
        if name.startswith("_"):
            continue
        assert hasattr(FakeEngine, name) or name in FakeEngine.__dataclass_fields__, name
        if inspect.isfunction(member):
            assert _parameters(getattr(FakeEngine, name)) == _parameters(member), name


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]
