"""Adding and removing single outputs of a configured route (smcroute's merge): the
new route keeps every other output, its input, lease and persistence, and replaces
the old one in place, so the flows of the outputs that stay never miss a packet.
Removing the last output leaves a blocking route (no outputs: the kernel drops and
counts the flow)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import InvalidArgument, NotFound
from ..model import Route, RouteKey, validate_interface_name
from .configured import refuse_replacing


def configured_route(routes: dict[RouteKey, Route], key: RouteKey, input: str | None) -> Route:
    """The configured route `key` (with input `input` when one is named); NotFound
    otherwise, naming what is there."""
    route = routes.get(key)
    if route is None:
        raise NotFound(f"no route {key} is configured; ListRoutes shows the configured routes")
    if input is not None and route.input != validate_interface_name(input):
        raise NotFound(
            f"route {key} has input {route.input!r}, not {input!r}; name that input "
            "or leave the input out"
        )
    refuse_replacing(route)
    return route


def _names(outputs: Sequence[str], method: str) -> tuple[str, ...]:
    """The interface names asked for, each once, in order; at least one."""
    if not outputs:
        raise InvalidArgument(f"{method}: no output interface given; name at least one")
    for name in outputs:
        validate_interface_name(name)
    return tuple(dict.fromkeys(outputs))


def with_outputs(route: Route, outputs: Sequence[str]) -> Route:
    """`route` with `outputs` added after its own; a name it has already is a no-op."""
    added = tuple(name for name in _names(outputs, "AddOutputs") if name not in route.outputs)
    return replace(route, outputs=route.outputs + added) if added else route


def without_outputs(route: Route, outputs: Sequence[str]) -> Route:
    """`route` without `outputs`; a name it does not have is a no-op. No outputs left:
    a blocking route."""
    gone = set(_names(outputs, "RemoveOutputs"))
    kept = tuple(name for name in route.outputs if name not in gone)
    return replace(route, outputs=kept) if len(kept) != len(route.outputs) else route
