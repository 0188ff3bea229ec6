"""Adding and removing single outputs of a configured route (smcroute's merge): the
new route keeps every other output, its input, lease and persistence, and replaces
the old one in place, so the flows of the outputs that stay never miss a packet.
Removing the last output leaves a blocking route (no outputs: the kernel drops and
counts the flow)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import InvalidArgument
from ..model import Route, validate_interface_name


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
