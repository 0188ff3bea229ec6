"""Checks of Route and VifConfig values handed to the engine (no I/O, no kernel).

The engine is the single source of truth and must never install a value the kernel
would reject half-way through a batch. Keys need no check beyond their type: a
RouteKey or VifKey is valid by construction (model.py). What is left is the rest of a
route (its interfaces and owner) and of a VIF configuration (its TTL threshold).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidArgument
from ..model import Route, RouteKey, VifConfig, VifKey, check_table, validate_interface_name

__all__ = [
    "check_interface_name",
    "check_interfaces",
    "check_route",
    "check_routes",
    "check_table",
    "check_vif",
]


def check_interface_name(name: str) -> None:
    validate_interface_name(name)


def check_route(route: Route) -> None:
    """Raise InvalidArgument naming the bad value when `route` cannot be installed."""
    check_routes((route,))


def check_routes(routes: Iterable[Route]) -> None:
    """check_route of every route, in order. The interfaces of each distinct (input,
    outputs) are checked once: the routes of a batch share a few."""
    checked: set[tuple[str, tuple[str, ...]]] = set()
    for route in routes:
        if not isinstance(route, Route):
            raise InvalidArgument(f"route {route!r} is not a Route")
        if not isinstance(route.key, RouteKey):
            raise InvalidArgument(f"route key {route.key!r} is not a RouteKey")
        shape = (route.input, route.outputs)
        try:
            known = shape in checked
        except TypeError:  # an unhashable value: refused below
            known = False
        if not known:
            check_interfaces(route.key, route.input, route.outputs)
            checked.add(shape)
        if route.owner is not None and not isinstance(route.owner, str):
            raise InvalidArgument(f"owner {route.owner!r} is not valid; give a bus name")


def check_interfaces(key: RouteKey, input: str, outputs: tuple[str, ...]) -> None:
    """The interfaces of route `key`: valid names, none twice. No outputs is a blocking
    route (the kernel drops and counts the flow); the input may be an output too (a
    hairpin: the kernel sends an exact (S,G) entry's packets back out of their input,
    and every (*,G) or prefix route is installed as exact (S,G) entries)."""
    validate_interface_name(input)
    if not isinstance(outputs, tuple):
        raise InvalidArgument(f"route {key}: outputs {outputs!r} are not a list of names")
    for name in outputs:
        validate_interface_name(name)
    if len(outputs) > 1 and len(set(outputs)) != len(outputs):
        twice = sorted({name for name in outputs if outputs.count(name) > 1})
        raise InvalidArgument(
            f"route {key} lists output {', '.join(twice)} more than once; "
            "name each output interface once"
        )


def check_vif(config: VifConfig) -> VifKey:
    """The key of the VIF `config` configures, once all of `config` is checked."""
    if not isinstance(config, VifConfig):
        raise InvalidArgument(f"VIF configuration {config!r} is not a VifConfig")
    key = config.key  # checks the interface, family and table
    threshold = config.ttl_threshold
    if type(threshold) is not int or not 1 <= threshold <= 255:
        raise InvalidArgument(f"TTL threshold {threshold!r} is not valid; use 1 to 255")
    return key
