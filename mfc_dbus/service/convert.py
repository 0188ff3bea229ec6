"""Model values <-> D-Bus values (no bus access here)."""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant

from ..errors import InvalidArgument
from ..model import (
    Route,
    RouteKey,
    RouteStatus,
    VifStatus,
    make_route_key,
    validate_interface_name,
)
from ..names import PENDING_VIF_INDEX
from . import options as opts

_NO_OPTIONS: dict[str, Any] = {}  # never modified
RouteTuple = tuple[str, str, str, list[str], dict[str, Variant]]
VifTuple = tuple[str, int, dict[str, Variant]]


def route_from_args(
    source: str,
    group: str,
    input: str,
    outputs: list[str],
    options: dict[str, Variant],
    *,
    sender: str,
    where: str,
    defaults: dict[str, Any] | None = None,
) -> Route:
    given = opts.parse(options, opts.ROUTE_OPTIONS, where) if options else _NO_OPTIONS
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
    except InvalidArgument as exc:  # name the call (and a batch's position), as parse() does
        raise InvalidArgument(f"{where}: {exc.message}") from None
    return Route(
        key=key,
        input=input,
        outputs=tuple(outputs),
        persistent=False if lease else bool(merged.get("persistent", True)),
        owner=sender if lease else None,
    )


def key_strings(key: RouteKey) -> tuple[str, str]:
    return key.texts


def route_tuple(status: RouteStatus) -> RouteTuple:
    route = status.route
    source, group = key_strings(route.key)
    extra = {
        "packets": Variant("t", status.counters.packets),
        "bytes": Variant("t", status.counters.bytes),
        "wrong_if": Variant("t", status.counters.wrong_if),
        "state": Variant("s", status.state),
        "persistent": Variant("b", route.persistent),
        "owner": Variant("s", route.owner or ""),
        "table": Variant("u", route.key.table),
        "family": Variant("s", route.key.family.value),
        "missing": Variant("as", list(status.missing_interfaces)),
    }
    return source, group, route.input, list(route.outputs), extra


def vif_index(vif: VifStatus) -> int:
    return PENDING_VIF_INDEX if vif.index is None else vif.index


def vif_tuple(vif: VifStatus) -> VifTuple:
    extra = {
        "family": Variant("s", vif.family.value),
        "table": Variant("u", vif.table),
        "ttl_threshold": Variant("u", vif.ttl_threshold),
        "explicit": Variant("b", vif.explicit),
        "state": Variant("s", "pending" if vif.index is None else "installed"),
        "in_packets": Variant("t", vif.in_packets),
        "out_packets": Variant("t", vif.out_packets),
        "in_bytes": Variant("t", vif.in_bytes),
        "out_bytes": Variant("t", vif.out_bytes),
    }
    return vif.interface, vif_index(vif), extra
