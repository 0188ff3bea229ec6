"""The a{sv} option dictionaries of the contract's methods, and their parsing.

The keys and their D-Bus types are the contract's (the org.mfc.Forwarding1.Keys
annotation of each argument). Unknown keys and wrong types are InvalidArgument naming
the key and the valid ones. Ranges are not checked here: a `u` is already 0..2**32-1
(every valid table id), and the model and engine check what narrows it further.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant

from ..contract import Contract
from ..errors import InvalidArgument
from ..model import Family

# Keys whose D-Bus value becomes a model value.
_CONVERT = {"family": Family.parse}


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """The keys one argument accepts; `where` names the call in messages."""

    where: str
    types: Mapping[str, str]
    valid: str = field(init=False)

    def __post_init__(self) -> None:
        valid = ", ".join(f"{key} ({sig})" for key, sig in sorted(self.types.items()))
        object.__setattr__(self, "valid", valid or "none")

    def parse(self, options: Mapping[str, Variant], where: str | None = None) -> dict[str, Any]:
        """Check `options`; return key -> plain Python value (a Family for "family")."""
        parsed: dict[str, Any] = {}
        for key, variant in options.items():
            signature = self.types.get(key)
            if signature is None:
                raise InvalidArgument(
                    f"unknown option {key!r} for {where or self.where}; "
                    f"valid options: {self.valid}"
                )
            if variant.signature != signature:
                raise InvalidArgument(
                    f"option {key!r} for {where or self.where} has type "
                    f"{variant.signature!r}; it must be {signature!r}; valid options: {self.valid}"
                )
            convert = _CONVERT.get(key)
            parsed[key] = variant.value if convert is None else convert(variant.value)
        return parsed


def option_spec(contract: Contract, method: str, arg: str = "options") -> OptionSpec:
    """The spec of `method`'s argument `arg` (an a{sv}, or an array of routes with one)."""
    return OptionSpec(method, contract.methods[method].arg(arg).keys)
