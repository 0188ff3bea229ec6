"""How large a D-Bus message of routes can get, against the bus's message limit.

dbus-daemon refuses a message longer than its max_message_size by dropping the
connection that sent it: the sender (the service for a ListRoutes reply, a client for
AddRoutes) loses the bus. Both sides check before sending instead and raise
LimitExceeded saying how to page or split. A cheap upper bound (every alignment gap
counted in full) decides most messages: a ListRoutes row of an exact IPv4 route
marshals to 320 bytes and is bounded at 595, an AddRoutes row to 64 and 88. Past the
bound the rows are measured exactly (rows_size): a reply of about 100,000 such
ListRoutes rows, a batch of about 500,000 such AddRoutes rows fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# dbus-daemon's default max_message_size on the system bus (commented out, as the
# default, in /usr/share/dbus-1/system.conf); session.conf raises it to 1,000,000,000.
SYSTEM_BUS_MESSAGE_LIMIT = 32 * 1024 * 1024
# Room for the header fields (path, interface, member, sender, destination, signature).
HEADER_ALLOWANCE = 4096
_FIXED = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4}
_STRING = 4 + 1 + 3  # length, NUL, alignment of what follows
_ALIGN = 7  # the most padding one aligned value can need


def string_size(text: str) -> int:
    return _STRING + len(text.encode())


def strings_size(texts: Iterable[str]) -> int:
    """An `as` without its length word."""
    return sum(_STRING + len(text.encode()) for text in texts)


class RowSizer:
    """An upper bound of one (s s s as a{sv}) row with the dict keys `keys` (key ->
    signature): a fixed part from the signatures, plus the strings of each row."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self.base = _ALIGN + 3 * _STRING + 4 + _ALIGN + 4 + _ALIGN  # struct, s s s, as, a{sv}
        self.entries = {
            key: _ALIGN + string_size(key) + 2 + len(signature) + _ALIGN
            + _FIXED.get(signature, 4 + _ALIGN if signature == "as" else _STRING)
            for key, signature in keys.items()
        }  # fmt: skip
        self.fixed = self.base + sum(self.entries.values())  # with every key present

    def bound(
        self,
        texts: Iterable[str],
        lists: Iterable[Sequence[str]] = (),
        keys: Iterable[str] | None = None,
    ) -> int:
        """The bound of one row whose strings (source, group, input and the string
        values of its dict) are `texts`, whose string lists are `lists`, and whose dict
        has the keys `keys` (None: every key)."""
        fixed = (
            self.fixed if keys is None else self.base + sum(map(self.entries.__getitem__, keys))
        )
        size = fixed + sum(len(text.encode()) for text in texts)
        return size + sum(strings_size(found) for found in lists)


def fits(size: int, limit: int = SYSTEM_BUS_MESSAGE_LIMIT) -> bool:
    return size + HEADER_ALLOWANCE <= limit


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def rows_size(rows: Iterable[Sequence]) -> int:
    """The exact marshalled size of an a(sssasa{sv}) body of `rows` whose variants are
    of types s, b, u, t or as: where the bound is too coarse to decide. About 10 us per
    row, so only past the bound."""
    at = 8  # the array's length, then padding to its first 8-aligned struct
    for source, group, input_, outputs, details in rows:
        at = _string(_string(_string(_align(at, 8), source), group), input_)
        at = _align(_strings(at, outputs), 4) + 4  # the dict's length
        for key, variant in details.items():
            at = _string(_align(at, 8), key)
            signature = variant.signature
            at += len(signature) + 2
            at = _value(at, signature, variant.value)
    return at


def _align(at: int, size: int) -> int:
    return (at + size - 1) & -size


def _string(at: int, text: str) -> int:
    return _align(at, 4) + 4 + len(text.encode()) + 1


def _strings(at: int, texts: Iterable[str]) -> int:
    at = _align(at, 4) + 4
    for text in texts:
        at = _string(at, text)
    return at


def _value(at: int, signature: str, value: object) -> int:
    if signature in ("t", "x", "d"):
        return _align(at, 8) + 8
    if signature in ("u", "i", "b"):
        return _align(at, 4) + 4
    if signature == "s":
        assert isinstance(value, str)
        return _string(at, value)
    if signature == "as":
        assert isinstance(value, list | tuple)
        return _strings(at, value)
    raise TypeError(f"rows_size: no size for a variant of type {signature!r}")
