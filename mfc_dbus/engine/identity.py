"""Which configured route a call means, given that the input is part of a template's
identity: several (*,G) or prefix routes may share their addresses with different
inputs, while an exact (S,G) has one input (the kernel's forwarding lookup ignores
MRT_ADD_MFC_PROXY's parent, so one (S,G) cannot come from two interfaces)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import AlreadyExists, InvalidArgument, NotFound
from ..model import Route, RouteKey
from .templates import TemplateIndex


def configured_route(
    routes: Mapping[RouteKey, Route], templates: TemplateIndex | None, key: RouteKey, input: str
) -> Route:
    """The configured route `key` from `input` ("": the only one there is). NotFound
    when there is none; InvalidArgument, listing the inputs, when `input` is "" and
    several templates share the key."""
    key = key.without_input()
    if not key.is_template:
        route = routes.get(key)
        if route is None:
            raise _not_found(key)
        if input and route.input != input:
            raise NotFound(
                f"route {key} comes from {route.input!r}, not {input!r}; name its input "
                f"{route.input!r} or none"
            )
        return route
    candidates = templates.from_any_input(key) if templates is not None else []
    if input:
        route = routes.get(key.with_input(input))
        if route is not None:
            return route
        if candidates:
            raise NotFound(
                f"no route {key} from {input!r} is configured; it is configured from "
                f"{_inputs(candidates)}"
            )
        raise _not_found(key)
    if not candidates:
        raise _not_found(key)
    if len(candidates) > 1:
        raise InvalidArgument(
            f"route {key} is configured from {len(candidates)} inputs: {_inputs(candidates)}; "
            "name the input of the one to remove (option 'input', or "
            "`mfc-dbus route del ... iif IF`)"
        )
    return candidates[0]


def refuse_other_input(current: Route | None, route: Route, replace: bool) -> None:
    """An exact (S,G) that exists from another input is replaced only on request."""
    if current is None or replace or current.input == route.input:
        return
    raise AlreadyExists(
        f"route {route.key} exists from input {current.input!r}; an exact (S,G) has one "
        f"input (the kernel forwards it from one interface), so it cannot also come from "
        f"{route.input!r}: remove it first, or pass the option replace=true "
        "(`mfc-dbus route add ... replace`) to move it to the new input"
    )


def _inputs(routes: list[Route]) -> str:
    return ", ".join(sorted(repr(route.input) for route in routes))


def _not_found(key: RouteKey) -> NotFound:
    return NotFound(f"no route {key} is configured; ListRoutes shows the configured routes")
