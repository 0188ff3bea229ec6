"""The D-Bus contract, read once from the checked-in introspection XML.

`dbus/org.mfc.Forwarding1.xml` (shipped inside the package as
`mfc_dbus/org.mfc.Forwarding1.xml`) names every method, argument, signal, property
and polkit action. The service dispatches and introspects from it, the client and
the tests take names and signatures from it: nothing is spelled out a second time.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .names import INTERFACE, INTERFACE_XML

POLKIT_ANNOTATION = "org.mfc.Forwarding1.PolkitAction"
DOC_ANNOTATION = "org.gtk.GDBus.DocString"
EMITS_CHANGED_ANNOTATION = "org.freedesktop.DBus.Property.EmitsChangedSignal"


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    signature: str


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...]
    action: str | None  # the polkit action; None: a read that needs no authorization

    @property
    def in_signature(self) -> str:
        return "".join(arg.signature for arg in self.inputs)

    @property
    def out_signature(self) -> str:
        return "".join(arg.signature for arg in self.outputs)


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    args: tuple[Arg, ...]

    @property
    def signature(self) -> str:
        return "".join(arg.signature for arg in self.args)


@dataclass(frozen=True, slots=True)
class PropertySpec:
    name: str
    signature: str
    constant: bool  # never changes while the service runs (no PropertiesChanged)


@dataclass(frozen=True, slots=True)
class Contract:
    interface: str
    methods: dict[str, MethodSpec]
    signals: dict[str, SignalSpec]
    properties: dict[str, PropertySpec]
    xml: str  # the file as shipped, documentation included


def _annotations(node: ET.Element) -> dict[str, str]:
    return {a.get("name", ""): a.get("value", "") for a in node.findall("annotation")}


def _args(node: ET.Element, direction: str | None) -> tuple[Arg, ...]:
    return tuple(
        Arg(arg.get("name", ""), arg.get("type", ""))
        for arg in node.findall("arg")
        if direction is None or arg.get("direction", "in") == direction
    )


def parse(xml: str, interface: str = INTERFACE) -> Contract:
    root = ET.fromstring(xml)
    [element] = [node for node in root.iter("interface") if node.get("name") == interface]
    methods = {
        node.get("name", ""): MethodSpec(
            node.get("name", ""),
            _args(node, "in"),
            _args(node, "out"),
            _annotations(node).get(POLKIT_ANNOTATION),
        )
        for node in element.findall("method")
    }
    signals = {
        node.get("name", ""): SignalSpec(node.get("name", ""), _args(node, None))
        for node in element.findall("signal")
    }
    properties = {
        node.get("name", ""): PropertySpec(
            node.get("name", ""),
            node.get("type", ""),
            _annotations(node).get(EMITS_CHANGED_ANNOTATION) == "const",
        )
        for node in element.findall("property")
    }
    return Contract(interface, methods, signals, properties, xml)


@cache
def load() -> Contract:
    """The contract of org.mfc.Forwarding1 (parsed once per process)."""
    return parse(resources.files("mfc_dbus").joinpath(INTERFACE_XML).read_text())
