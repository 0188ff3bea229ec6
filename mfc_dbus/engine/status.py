"""Read-back: routes, learned flows and VIFs as ListRoutes and ListVifs report them,
with the kernel's counters."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..errors import MfcError
from ..model import Counters, Family, Route, RouteKey, RouteStatus, VifStatus
from .table import SG, Learned, Table

log = logging.getLogger(__name__)

_HOST_PREFIX = {Family.IPV4: 32, Family.IPV6: 128}
_NO_COUNTERS = Counters()


def sg_counters(table: Table, sg: SG) -> Counters:
    """The kernel's counters of an installed entry; zero when there is none."""
    if table.sock is None or sg not in table.mfc:
        return _NO_COUNTERS
    try:
        c = table.sock.sg_counters(sg[0], sg[1])
    except MfcError:
        return _NO_COUNTERS
    return Counters(c.packets, c.bytes, c.wrong_if)


def read_counters(table: Table, sgs: Iterable[SG]) -> dict[SG, Counters]:
    """The kernel's counters of the installed entries among `sgs`, one ioctl each on a
    reused request (kernel/sgcounters.py); entries not installed are left out."""
    if table.sock is None:
        return {}
    installed = table.mfc
    wanted = [sg for sg in dict.fromkeys(sgs) if sg in installed]  # each entry once
    try:
        found = table.sock.sg_counters_many(wanted)
    except MfcError as exc:
        log.warning("%s: cannot read counters: %s", table.describe, exc.message)
        return {}
    return {
        sg: Counters(*counts)
        for sg, counts in zip(wanted, found, strict=True)
        if counts is not None
    }


def flows_by_template(table: Table) -> dict[RouteKey, list[SG]]:
    """The flows learned from each (*,G) or prefix route of the table: one pass over the
    learned flows for every template route a listing shows."""
    flows: dict[RouteKey, list[SG]] = {}
    for sg, learned in table.learned.items():
        if learned.template is not None:
            flows.setdefault(learned.template.key, []).append(sg)
    return flows


def summed(counters: dict[SG, Counters], sgs: Iterable[SG]) -> Counters:
    packets = octets = wrong = 0
    for sg in sgs:
        found = counters.get(sg)
        if found is not None:
            packets += found.packets
            octets += found.bytes
            wrong += found.wrong_if
    return Counters(packets, octets, wrong)


def configured_status(table: Table, route: Route, counters: Counters) -> RouteStatus:
    missing = table.missing(route.input, route.outputs)
    state = "pending" if missing or table.sock is None else "installed"
    return RouteStatus(route, state, counters, missing)


def _template_counters(table: Table, key: RouteKey) -> Counters:
    """A (*,G) or prefix route's counters: the sum over the flows learned from it."""
    packets = octets = wrong = 0
    for sg, learned in table.learned.items():
        if learned.template is not None and learned.template.key == key:
            c = sg_counters(table, sg)
            packets += c.packets
            octets += c.bytes
            wrong += c.wrong_if
    return Counters(packets, octets, wrong)


def route_status(table: Table, route: Route, counters: bool = True) -> RouteStatus:
    """A configured route's state; with counters=False no kernel counter is read and
    the counters are zero."""
    if not counters:
        return configured_status(table, route, _NO_COUNTERS)
    key = route.key
    found = _template_counters(table, key) if key.is_template else sg_counters(table, key.sg)
    return configured_status(table, route, found)


def learned_route(table: Table, sg: SG, learned: Learned) -> Route:
    """A learned flow as a route (made once, again only when its template changed)."""
    route = learned.route
    if route is None or route.input != learned.input or route.outputs != learned.outputs:
        prefix = _HOST_PREFIX[table.family]
        key = RouteKey(table.table, sg, prefix, prefix)
        route = learned.route = Route(key, learned.input, learned.outputs, persistent=False)
    return route


def learned_status(
    table: Table, sg: SG, learned: Learned, counters: Counters | None = None
) -> RouteStatus:
    route = learned_route(table, sg, learned)
    missing = table.missing(route.input, route.outputs)
    found = sg_counters(table, sg) if counters is None else counters
    return RouteStatus(route, "learned", found, missing)


def vif_status(table: Table, name: str) -> VifStatus:
    slot = table.live.get(name)
    counters = None
    if slot is not None and table.sock is not None:
        try:
            counters = table.sock.vif_counters(slot)
        except MfcError:
            counters = None
    return VifStatus(
        interface=name,
        family=table.family,
        table=table.table,
        index=slot,
        ttl_threshold=table.vifs.threshold(name),
        explicit=name in table.vifs.explicit,
        in_packets=counters.in_packets if counters else 0,
        out_packets=counters.out_packets if counters else 0,
        in_bytes=counters.in_bytes if counters else 0,
        out_bytes=counters.out_bytes if counters else 0,
        mrdisc=table.vifs.mrdisc(name),
    )
