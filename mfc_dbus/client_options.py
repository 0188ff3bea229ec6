"""The client's a{sv} both ways: options typed as the contract says, and the Variants
of a reply unwrapped into plain values."""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant

from . import contract
from .errors import InvalidArgument

# D-Bus type of every option and filter key the contract defines.
OPTION_SIGNATURES: dict[str, str] = contract.load().option_types()


def unwrap(value: Any) -> Any:
    """Turn Variants (nested in dicts and lists) into plain Python values."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def make_options(**values: Any) -> dict[str, Variant]:
    """An a{sv} from keyword arguments, typed as the contract says; None means "not
    given: service default"."""
    options: dict[str, Variant] = {}
    for key, value in values.items():
        if value is None:
            continue
        signature = OPTION_SIGNATURES.get(key)
        if signature is None:
            valid = ", ".join(sorted(OPTION_SIGNATURES))
            raise InvalidArgument(f"unknown option {key!r}; valid options: {valid}")
        options[key] = Variant(signature, value)
    return options
