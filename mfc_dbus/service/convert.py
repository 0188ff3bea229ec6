"""Model values <-> the contract's D-Bus values (no bus access here).

Which keys a details dict has, which arguments a signal has, in which order and of
which type, is the contract's; this module only knows how to read each one from a
model value. Building a `Wire` fails (TypeError) when the contract names a key or a
signal argument it cannot fill, or when it fills one the contract does not name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from dbus_fast import SignatureTree, Variant

from ..contract import Contract
from ..errors import InvalidArgument, LimitExceeded
from ..model import Route, RouteStatus, VifStatus, make_route_key, validate_interface_name
from ..names import PAGE_NEXT, PENDING_VIF_INDEX
from ..wiresize import RowSizer, fits, mib, rows_size
from .groupwire import GROUP_SIGNAL_FIELDS, group_signal_values
from .options import OptionSpec, option_spec

RouteTuple = tuple[str, str, str, list[str], dict[str, Variant]]
VifTuple = tuple[str, int, dict[str, Variant]]
Getter = Callable[[Any], Any]


# Source and group texts (an IPv6 prefix: at most 43 characters each), state and family.
_BOUNDED_TEXTS = 43 + 43 + len("installed") + len("ipv4")
_LIST_ITEM = 8  # an interface name's length word, NUL and alignment in an `as`
_UNVERIFIED = repeat(False)  # Variant's verify argument, for map()


def vif_index(vif: VifStatus) -> int:
    return PENDING_VIF_INDEX if vif.index is None else vif.index


# What a ListRoutes row's details can carry, read in one go from a RouteStatus (the
# contract's keys pick and order them), and each key's signature.
ROUTE_DETAIL_FIELDS = ("packets", "bytes", "wrong_if", "state", "persistent", "owner",
                       "table", "family", "missing", "origin")  # fmt: skip
_FAMILY_OF_SIZE = {4: "ipv4", 16: "ipv6"}


def route_detail_values(status: RouteStatus) -> tuple[Any, ...]:
    route = status.route
    key = route.key
    counters = status.counters
    return (
        counters.packets, counters.bytes, counters.wrong_if, status.state, route.persistent,
        route.owner or "", key.table, _FAMILY_OF_SIZE[len(key.sg[1])],
        list(status.missing_interfaces), route.origin or "",
    )  # fmt: skip


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
        route_keys = contract.methods["ListRoutes"].arg("routes").keys
        if route_keys.get(PAGE_NEXT) != "s":
            raise TypeError(f"ListRoutes: the contract names no details key {PAGE_NEXT}:s")
        details = {key: sig for key, sig in route_keys.items() if key != PAGE_NEXT}
        _matched(details, ROUTE_DETAIL_FIELDS, "ListRoutes")
        self._detail_keys = tuple(details)
        # Parsed once: a Variant made from its SignatureType skips the parse.
        self._detail_types = tuple(SignatureTree(sig).types[0] for sig in details.values())
        self._pick_details: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
        if self._detail_keys != ROUTE_DETAIL_FIELDS:
            self._pick_details = itemgetter(*map(ROUTE_DETAIL_FIELDS.index, details))
        self._route_sizer = RowSizer(route_keys)  # next included: a bound for every row
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
        values = route_detail_values(status)
        if self._pick_details is not None:
            values = self._pick_details(values)
        # Unverified: the values are the model's own, of the contract's types.
        variants = map(Variant, self._detail_types, values, _UNVERIFIED)
        return (
            source,
            group,
            route.input,
            list(route.outputs),
            dict(zip(self._detail_keys, variants, strict=True)),
        )

    def route_page(
        self, statuses: list[RouteStatus], next_token: str | None, limit: int
    ) -> list[RouteTuple]:
        """ListRoutes' reply rows, the last carrying `next_token`; LimitExceeded when
        the reply would exceed `limit` bytes (the bus would drop the service's
        connection rather than deliver it). A cheap upper bound decides most replies;
        past it the rows are measured exactly."""
        size = self._route_sizer.fixed * len(statuses) + len(next_token or "")
        if fits(size, limit):  # the fixed part alone fits: add each row's strings
            size += sum(map(self._strings_size, statuses))
        rows = [self.route_tuple(status) for status in statuses]
        if next_token is not None and rows:
            rows[-1][4][PAGE_NEXT] = Variant("s", next_token)
        if not fits(size, limit):
            size = rows_size(rows)
            if not fits(size, limit):
                raise LimitExceeded(
                    f"ListRoutes: a reply of {len(statuses)} routes would take {mib(size)}, "
                    f"more than the {mib(limit)} a bus message may hold; page through them "
                    f"with the filter keys limit (such as limit=10000) and after (the "
                    f"{PAGE_NEXT!r} value of the previous page's last row), as `mfc-dbus "
                    "route show` does"
                )
        return rows

    @staticmethod
    def _strings_size(status: RouteStatus) -> int:
        """The row's strings, beyond RowSizer's fixed part: the lengths the model bounds
        (addresses, state, family) as constants, interface names (printable ASCII) by
        their length, the free texts (owner, origin) encoded."""
        route = status.route
        names = (route.input, *route.outputs, *status.missing_interfaces)
        size = _BOUNDED_TEXTS + sum(map(len, names)) + _LIST_ITEM * (len(names) - 1)
        if route.owner:
            size += len(route.owner.encode())
        if route.origin:
            size += len(route.origin.encode())
        return size

    def vif_tuple(self, vif: VifStatus) -> VifTuple:
        details = {key: Variant(sig, get(vif)) for key, sig, get in self._vif_details}
        return vif.interface, vif_index(vif), details

    def signal_body(self, member: str, value: Any) -> list[Any]:
        """The body of signal `member` for the engine's value, in the contract's order."""
        return self._signal_bodies[member](value)
