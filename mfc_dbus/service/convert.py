"""Model values <-> the contract's D-Bus values (no bus access here).

Which keys a details dict has, which arguments a signal has, in which order and of
which type, is the contract's; this module only knows how to read each one from a
model value. Building a `Wire` fails (TypeError) when the contract names a key or a
signal argument it cannot fill, or when it fills one the contract does not name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any

from dbus_fast import Variant

from ..contract import Contract
from ..errors import InvalidArgument
from ..model import Route, RouteStatus, VifStatus, make_route_key, validate_interface_name
from ..names import PENDING_VIF_INDEX
from .groupwire import GROUP_SIGNAL_FIELDS, group_signal_values
from .options import OptionSpec, option_spec

RouteTuple = tuple[str, str, str, list[str], dict[str, Variant]]
VifTuple = tuple[str, int, dict[str, Variant]]
Getter = Callable[[Any], Any]


def vif_index(vif: VifStatus) -> int:
    return PENDING_VIF_INDEX if vif.index is None else vif.index


ROUTE_DETAILS: dict[str, Callable[[RouteStatus], Any]] = {
    "packets": attrgetter("counters.packets"),
    "bytes": attrgetter("counters.bytes"),
    "wrong_if": attrgetter("counters.wrong_if"),
    "state": attrgetter("state"),
    "persistent": attrgetter("route.persistent"),
    "owner": lambda status: status.route.owner or "",
    "table": attrgetter("route.key.table"),
    "family": attrgetter("route.key.family.value"),
    "missing": lambda status: list(status.missing_interfaces),
    "origin": lambda status: status.route.origin or "",
}
VIF_DETAILS: dict[str, Callable[[VifStatus], Any]] = {
    "family": attrgetter("family.value"),
    "table": attrgetter("table"),
    "ttl_threshold": attrgetter("ttl_threshold"),
    "explicit": attrgetter("explicit"),
    "state": lambda vif: "pending" if vif.index is None else "installed",
    "in_packets": attrgetter("in_packets"),
    "out_packets": attrgetter("out_packets"),
    "in_bytes": attrgetter("in_bytes"),
    "out_bytes": attrgetter("out_bytes"),
    "mrdisc": attrgetter("mrdisc"),
}
# What a signal can carry about a route or a VIF, read in one go from the value the
# engine's listener call passes; the contract's argument names pick and order them.
ROUTE_SIGNAL_FIELDS = ("source", "group", "input", "outputs", "table", "family")
VIF_SIGNAL_FIELDS = ("interface", "index", "family", "table")


def route_signal_values(route: Route) -> tuple[Any, ...]:
    key = route.key
    source, group = key.texts
    return source, group, route.input, list(route.outputs), key.table, key.family.value


def vif_signal_values(vif: VifStatus) -> tuple[Any, ...]:
    return vif.interface, vif_index(vif), vif.family.value, vif.table


SIGNAL_VALUES: dict[str, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    "RouteAdded": (ROUTE_SIGNAL_FIELDS, route_signal_values),
    "RouteRemoved": (ROUTE_SIGNAL_FIELDS, route_signal_values),
    "VifAdded": (VIF_SIGNAL_FIELDS, vif_signal_values),
    "VifRemoved": (VIF_SIGNAL_FIELDS, vif_signal_values),
    "GroupJoined": (GROUP_SIGNAL_FIELDS, group_signal_values),
    "GroupLeft": (GROUP_SIGNAL_FIELDS, group_signal_values),
}


def _body_builder(name: str, arg_names: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    fields, values = SIGNAL_VALUES[name]
    missing = [arg for arg in arg_names if arg not in fields]
    if missing:
        raise TypeError(f"signal {name}: the service cannot fill {missing}")
    if arg_names == fields:
        return lambda value: list(values(value))
    positions = [fields.index(arg) for arg in arg_names]

    def body(value: Any) -> list[Any]:
        found = values(value)
        return [found[n] for n in positions]

    return body


def _matched(wanted: Iterable[str], known: Iterable[str], what: str) -> None:
    if set(wanted) != set(known):
        raise TypeError(
            f"{what}: the contract names {sorted(wanted)}, the service fills {sorted(known)}"
        )


def _details(
    wanted: Mapping[str, str], known: Mapping[str, Getter], what: str
) -> tuple[tuple[str, str, Getter], ...]:
    _matched(wanted, known, what)
    return tuple((key, signature, known[key]) for key, signature in wanted.items())


class Wire:
    """The conversions of one contract, checked against it once."""

    def __init__(self, contract: Contract) -> None:
        self.route_options = option_spec(contract, "AddRoute")
        self.batch_options = option_spec(contract, "AddRoutes")
        self.batch_route_options = option_spec(contract, "AddRoutes", "routes")
        self._route_details = _details(
            contract.methods["ListRoutes"].arg("routes").keys, ROUTE_DETAILS, "ListRoutes"
        )
        self._vif_details = _details(
            contract.methods["ListVifs"].arg("vifs").keys, VIF_DETAILS, "ListVifs"
        )
        _matched(contract.signals, SIGNAL_VALUES, "signals")
        self._signal_bodies = {
            name: _body_builder(name, spec.arg_names) for name, spec in contract.signals.items()
        }

    def route_from_args(
        self,
        source: str,
        group: str,
        input: str,
        outputs: list[str],
        options: dict[str, Variant],
        *,
        sender: str,
        where: str,
        spec: OptionSpec | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> Route:
        given = (spec or self.route_options).parse(options, where) if options else {}
        merged = {**defaults, **given} if defaults else given
        lease = bool(merged.get("lease", False))
        if lease and given.get("persistent") is True:
            raise InvalidArgument(
                f"{where}: options lease=true and persistent=true conflict: a lease route "
                "ends with its caller and is never saved; drop one of them"
            )
        try:
            key = make_route_key(source, group, merged.get("table", 0))
            validate_interface_name(input)
            for name in outputs:
                validate_interface_name(name)
        except InvalidArgument as exc:  # name the call (and a batch's position), as parse()
            raise InvalidArgument(f"{where}: {exc.message}") from None
        return Route(
            key=key,
            input=input,
            outputs=tuple(outputs),
            persistent=False if lease else bool(merged.get("persistent", True)),
            owner=sender if lease else None,
        )

    def route_tuple(self, status: RouteStatus) -> RouteTuple:
        route = status.route
        source, group = route.key.texts
        details = {key: Variant(sig, get(status)) for key, sig, get in self._route_details}
        return source, group, route.input, list(route.outputs), details

    def vif_tuple(self, vif: VifStatus) -> VifTuple:
        details = {key: Variant(sig, get(vif)) for key, sig, get in self._vif_details}
        return vif.interface, vif_index(vif), details

    def signal_body(self, member: str, value: Any) -> list[Any]:
        """The body of signal `member` for the engine's value, in the contract's order."""
        return self._signal_bodies[member](value)
