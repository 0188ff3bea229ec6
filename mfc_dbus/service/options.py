"""The a{sv} option dictionaries: known keys, their D-Bus types, and parsing.

Unknown keys and wrong types are InvalidArgument naming the key and the valid ones.
"""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant

from ..errors import InvalidArgument
from ..model import MAX_TABLE_ID, Family

# option key -> D-Bus signature
ROUTE_OPTIONS = {"persistent": "b", "lease": "b", "table": "u"}
REMOVE_ROUTE_OPTIONS = {"table": "u"}
FLUSH_OPTIONS = {"family": "s", "table": "u"}
LIST_FILTER = {"family": "s", "table": "u"}
ADD_VIF_OPTIONS = {"family": "s", "table": "u", "ttl_threshold": "u", "persistent": "b"}
REMOVE_VIF_OPTIONS = {"family": "s", "table": "u"}


def _valid(spec: dict[str, str]) -> str:
    return ", ".join(f"{key} ({sig})" for key, sig in sorted(spec.items())) or "none"


def parse(options: dict[str, Variant], spec: dict[str, str], where: str) -> dict[str, Any]:
    """Check `options` against `spec`; return key -> plain Python value."""
    parsed: dict[str, Any] = {}
    for key, variant in options.items():
        signature = spec.get(key)
        if signature is None:
            raise InvalidArgument(
                f"unknown option {key!r} for {where}; valid options: {_valid(spec)}"
            )
        if variant.signature != signature:
            raise InvalidArgument(
                f"option {key!r} for {where} has type {variant.signature!r}; "
                f"it must be {signature!r}; valid options: {_valid(spec)}"
            )
        parsed[key] = variant.value
    if "family" in parsed:
        parsed["family"] = Family.parse(parsed["family"])
    if "table" in parsed and not 0 <= parsed["table"] <= MAX_TABLE_ID:
        raise InvalidArgument(f"table {parsed['table']} is not valid; use 0 to {MAX_TABLE_ID}")
    return parsed
