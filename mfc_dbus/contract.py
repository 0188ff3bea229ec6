"""The D-Bus contract, read once from the checked-in introspection XML.

`dbus/org.mfc.Forwarding1.xml` (shipped inside the package as
`mfc_dbus/org.mfc.Forwarding1.xml`) names every method, argument, signal, property,
option key with its type, and polkit action. The service dispatches, parses options,
builds signals and introspects from it; the client and the tests take names,
signatures and option types from it: nothing is spelled out a second time.

    spec = load().methods["AddRoute"]
    spec.in_signature            # "sssasa{sv}"
    spec.arg("options").keys     # {"persistent": "b", "lease": "b", "table": "u"}
    spec.action                  # "org.mfc.Forwarding1.manage-routes"
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .names import INTERFACE, INTERFACE_XML

POLKIT_ANNOTATION = "org.mfc.Forwarding1.PolkitAction"
KEYS_ANNOTATION = "org.mfc.Forwarding1.Keys"
DOC_ANNOTATION = "org.gtk.GDBus.DocString"
EMITS_CHANGED_ANNOTATION = "org.freedesktop.DBus.Property.EmitsChangedSignal"
DICT_OF_VARIANTS = "a{sv}"


class ContractError(ValueError):
    """The XML is not a contract this code can serve (a missing or malformed annotation)."""


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    signature: str
    doc: str
    keys: Mapping[str, str]  # the a{sv} this argument carries: key -> D-Bus type


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...]
    action: str | None  # the polkit action; None: a read that needs no authorization
    doc: str
    in_signature: str
    out_signature: str

    def arg(self, name: str) -> Arg:
        """The input or output argument `name` (KeyError if the method has none)."""
        for arg in (*self.inputs, *self.outputs):
            if arg.name == name:
                return arg
        raise KeyError(f"{self.name} has no argument {name!r}")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    args: tuple[Arg, ...]
    doc: str
    signature: str

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(arg.name for arg in self.args)


@dataclass(frozen=True, slots=True)
class PropertySpec:
    name: str
    signature: str
    constant: bool  # never changes while the service runs (no PropertiesChanged)
    doc: str


@dataclass(frozen=True, slots=True)
class Contract:
    interface: str
    methods: Mapping[str, MethodSpec]
    signals: Mapping[str, SignalSpec]
    properties: Mapping[str, PropertySpec]
    doc: str
    xml: str  # the file as shipped, documentation included

    @property
    def actions(self) -> frozenset[str]:
        """Every polkit action a method names."""
        return frozenset(spec.action for spec in self.methods.values() if spec.action)

    def option_types(self) -> dict[str, str]:
        """Every a{sv} key of the method inputs with its type (one type per key)."""
        found: dict[str, str] = {}
        for method in self.methods.values():
            for arg in method.inputs:
                for key, signature in arg.keys.items():
                    if found.setdefault(key, signature) != signature:
                        raise ContractError(
                            f"option {key!r} is {found[key]!r} elsewhere but {signature!r} "
                            f"in {method.name}({arg.name})"
                        )
        return found


def _annotations(node: ET.Element) -> dict[str, str]:
    return {a.get("name", ""): a.get("value", "") for a in node.findall("annotation")}


def _keys(text: str, where: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for pair in text.split():
        key, _, signature = pair.partition(":")
        if not key or not signature or key in keys:
            raise ContractError(
                f"{where}: {KEYS_ANNOTATION} entry {pair!r} is not a new 'key:type'"
            )
        keys[key] = signature
    return keys


def _arg(node: ET.Element, owner: str) -> Arg:
    name, signature = node.get("name", ""), node.get("type", "")
    annotations = _annotations(node)
    where = f"{owner}({name})"
    if (DICT_OF_VARIANTS in signature) != (KEYS_ANNOTATION in annotations):
        raise ContractError(
            f"{where}: an argument carrying {DICT_OF_VARIANTS} needs a {KEYS_ANNOTATION} "
            "annotation, and no other argument may have one"
        )
    keys = _keys(annotations.get(KEYS_ANNOTATION, ""), where)
    return Arg(name, signature, annotations.get(DOC_ANNOTATION, ""), keys)


def _args(node: ET.Element, direction: str | None) -> tuple[Arg, ...]:
    owner = node.get("name", "")
    return tuple(
        _arg(arg, owner)
        for arg in node.findall("arg")
        if direction is None or arg.get("direction", "in") == direction
    )


def _method(node: ET.Element) -> MethodSpec:
    inputs, outputs = _args(node, "in"), _args(node, "out")
    annotations = _annotations(node)
    return MethodSpec(
        name=node.get("name", ""),
        inputs=inputs,
        outputs=outputs,
        action=annotations.get(POLKIT_ANNOTATION),
        doc=annotations.get(DOC_ANNOTATION, ""),
        in_signature="".join(arg.signature for arg in inputs),
        out_signature="".join(arg.signature for arg in outputs),
    )


def _signal(node: ET.Element) -> SignalSpec:
    args = _args(node, None)
    doc = _annotations(node).get(DOC_ANNOTATION, "")
    return SignalSpec(node.get("name", ""), args, doc, "".join(arg.signature for arg in args))


def _property(node: ET.Element) -> PropertySpec:
    annotations = _annotations(node)
    return PropertySpec(
        node.get("name", ""),
        node.get("type", ""),
        annotations.get(EMITS_CHANGED_ANNOTATION) == "const",
        annotations.get(DOC_ANNOTATION, ""),
    )


def parse(xml: str, interface: str = INTERFACE) -> Contract:
    root = ET.fromstring(xml)
    found = [node for node in root.iter("interface") if node.get("name") == interface]
    if len(found) != 1:
        raise ContractError(f"the XML defines interface {interface} {len(found)} times")
    element = found[0]
    contract = Contract(
        interface=interface,
        methods={node.get("name", ""): _method(node) for node in element.findall("method")},
        signals={node.get("name", ""): _signal(node) for node in element.findall("signal")},
        properties={node.get("name", ""): _property(node) for node in element.findall("property")},
        doc=_annotations(element).get(DOC_ANNOTATION, ""),
        xml=xml,
    )
    contract.option_types()  # one type per option key, or ContractError
    return contract


@cache
def load() -> Contract:
    """The contract of org.mfc.Forwarding1 (parsed once per process)."""
    return parse(resources.files("mfc_dbus").joinpath(INTERFACE_XML).read_text())
