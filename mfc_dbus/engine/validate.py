"""Checks of Route and VifConfig values handed to the engine (no I/O, no kernel).

The service builds keys with model.make_route_key, but the engine checks again: it is
the single source of truth and must never install a value the kernel would reject
half-way through a batch. Known-good groups and names are cached so a batch of
10,000 routes costs little.
"""

from __future__ import annotations

import ipaddress

from ..errors import InvalidArgument
from ..model import (
    MAX_TABLE_ID,
    PARSED_MARK,
    Family,
    Route,
    RouteKey,
    VifConfig,
    check_multicast_group,
    validate_interface_name,
)

_NETWORK_CLASS = {Family.IPV4: ipaddress.IPv4Network, Family.IPV6: ipaddress.IPv6Network}
_good_groups: set[object] = set()
_good_group_ids: dict[int, object] = {}
_good_interfaces: set[tuple[str, tuple[str, ...]]] = set()  # checked (input, outputs)


def check_interface_name(name: str) -> None:
    validate_interface_name(name)  # remembers the good names


def check_table(table: object) -> None:
    if not isinstance(table, int) or isinstance(table, bool) or not 0 <= table <= MAX_TABLE_ID:
        raise InvalidArgument(
            f"table {table!r} is not valid; use 0 (the default) to {MAX_TABLE_ID}"
        )


def _check_group(key: RouteKey) -> None:
    group = key.group
    # By identity first: parsed groups are shared objects (model's cache), and hashing an
    # ipaddress network is slow Python. The dict keeps each object alive, so an id is
    # never reused while it is a key.
    if _good_group_ids.get(id(group)) is group and type(group) is _NETWORK_CLASS[key.family]:
        return
    if (key.family, group) in _good_groups:
        _remember_group(group)
        return
    if not isinstance(group, _NETWORK_CLASS[key.family]):
        raise InvalidArgument(
            f"group {group!r} is not an {key.family} prefix; the route's family is {key.family}"
        )
    check_multicast_group(group, str(group))
    _good_groups.add((key.family, group))
    _remember_group(group)


def _remember_group(group: object) -> None:
    if len(_good_group_ids) >= 4096:
        _good_group_ids.clear()
    _good_group_ids[id(group)] = group


def _is_multicast_source(key: RouteKey) -> bool:
    if key.is_template:
        return key.source.network_address.is_multicast
    first = key.sg[0][0]  # the packed source, cached on the key: no ipaddress property
    return first == 0xFF if key.family is Family.IPV6 else 224 <= first < 240


def check_key(key: RouteKey) -> None:
    if not isinstance(key, RouteKey):
        raise InvalidArgument(f"route key {key!r} is not a RouteKey")
    if PARSED_MARK in key.__dict__:  # made by make_route_key, which ran these checks
        return
    if not isinstance(key.family, Family):
        raise InvalidArgument(f"family {key.family!r} is not valid; use 'ipv4' or 'ipv6'")
    check_table(key.table)
    _check_group(key)
    source = key.source
    if source is not None:
        if not isinstance(source, _NETWORK_CLASS[key.family]):
            raise InvalidArgument(
                f"source {source!r} is not an {key.family} address or prefix, "
                f"but group {key.group} is: use one family for both"
            )
        if _is_multicast_source(key):
            raise InvalidArgument(
                f"source {source} is a multicast address; a source must be a unicast sender "
                "address or prefix"
            )


def check_route(route: Route) -> None:
    """Raise InvalidArgument naming the bad value when `route` cannot be installed."""
    if not isinstance(route, Route):
        raise InvalidArgument(f"route {route!r} is not a Route")
    check_key(route.key)
    interfaces = (route.input, route.outputs)
    try:
        known = interfaces in _good_interfaces
    except TypeError:  # an unhashable outputs value: checked (and refused) below
        known = False
    if not known:
        _check_interfaces(route)
        if len(_good_interfaces) >= 4096:
            _good_interfaces.clear()
        _good_interfaces.add(interfaces)
    if route.owner is not None and not isinstance(route.owner, str):
        raise InvalidArgument(f"owner {route.owner!r} is not valid; give a bus name")


def _check_interfaces(route: Route) -> None:
    check_interface_name(route.input)
    outputs = route.outputs
    if not isinstance(outputs, tuple) or not outputs:
        raise InvalidArgument(
            f"route {route.key} has no output interface; give at least one, such as 'eth1'"
        )
    for name in outputs:
        check_interface_name(name)
    if len(set(outputs)) != len(outputs):
        twice = sorted({name for name in outputs if outputs.count(name) > 1})
        raise InvalidArgument(
            f"route {route.key} lists output {', '.join(twice)} more than once; "
            "name each output interface once"
        )
    if route.input in outputs:
        raise InvalidArgument(
            f"route {route.key}: input interface {route.input!r} is also an output; "
            "the kernel never forwards a packet back out of the interface it came in on"
        )


def check_vif(config: VifConfig) -> None:
    if not isinstance(config, VifConfig):
        raise InvalidArgument(f"VIF configuration {config!r} is not a VifConfig")
    check_interface_name(config.interface)
    if not isinstance(config.family, Family):
        raise InvalidArgument(f"family {config.family!r} is not valid; use 'ipv4' or 'ipv6'")
    check_table(config.table)
    threshold = config.ttl_threshold
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= 255:
        raise InvalidArgument(f"TTL threshold {threshold!r} is not valid; use 1 to 255")
