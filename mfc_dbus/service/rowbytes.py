"""ListRoutes' rows, a(sssasa{sv}), written straight in D-Bus's wire format.

dbus-fast marshals such a row, ten Variants in its details, in 6.5 us (5.x) to 9 us
(1.84, Debian 12), and making the Variants costs 4-5 us more: together more than
everything else the service does for a row. Written here in 1.5-3.5 us (the same
machine): every details entry starts 8-aligned, so an entry's key, signature and the
padding before its value are constant bytes made once from the contract's keys, and
what rows share is written once per reply (RowEncoder). dbus-fast 1.84 also writes a
non-ASCII string's length in characters, a message dbus-daemon refuses by dropping
the sender; here lengths are in bytes. tests/service/test_rowbytes.py compares every
byte with dbus-fast 5's marshalling of the same rows as Variants, for each kind of
route, and reads them back with dbus-fast.

Little-endian, as dbus-fast writes. Offsets are the body's: a body starts 8-aligned in
its message, so alignment within the body is alignment within the message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack
_PAD = tuple(bytes(n) for n in range(8))  # _PAD[n]: n zero bytes
_ALIGNMENT = {"t": 8, "u": 4, "b": 4, "s": 4, "as": 4}  # of a details value's type
_FIXED = {"t": "Q", "u": "I", "b": "I"}  # the struct codes of the fixed-size ones

# (source, group, input, outputs, details values in the encoder's key order)
Row = tuple[str, str, str, Sequence[str], Sequence[Any]]


def _string(text: str) -> bytes:
    data = text.encode()
    if b"\0" in data:
        raise ValueError(f"a D-Bus string cannot hold a NUL: {text!r}")
    return _U32(len(data)) + data + b"\0"


def _entry_head(key: str, signature: str) -> bytes:
    """A dict entry's bytes up to its value: key, variant signature, padding."""
    head = _string(key) + bytes((len(signature),)) + signature.encode() + b"\0"
    return head + _PAD[-len(head) % _ALIGNMENT[signature]]


class RowEncoder:
    """Rows of ListRoutes' reply with the details keys `keys` (key -> signature, in
    the order written), and the key a page's last row adds (`last_key`, a string).

    A row is written from its own start, which is 8-aligned in the body: its bytes do
    not depend on where it lands. Its details dict starts 8-aligned too, and the
    leading entries of fixed size (the counters) are one struct. The rest of a row
    repeats across rows (the same group, input, outputs, state, family, table...), so
    each distinct rest is written once per reply and shared; only the source and the
    counters are written for every row."""

    def __init__(self, keys: Mapping[str, str], last_key: str) -> None:
        unknown = sorted(sig for sig in keys.values() if sig not in _ALIGNMENT)
        if unknown:
            raise TypeError(f"ListRoutes details of type {unknown} cannot be written")
        items = list(keys.items())
        fixed = 0
        while fixed < len(items) and items[fixed][1] in _FIXED:
            fixed += 1
        self._fixed_count = fixed
        layout, size, self._fixed_heads = "<", 0, []
        for key, sig in items[:fixed]:
            head = _entry_head(key, sig)
            pad = -size & 7  # each entry starts 8-aligned
            layout += f"{pad}x{len(head)}s{_FIXED[sig]}"
            size += pad + len(head) + struct.calcsize("<" + _FIXED[sig])
            self._fixed_heads.append(head)
        self._fixed_struct = struct.Struct(layout)
        self._fixed_size = size
        self._rest = tuple((_entry_head(key, sig), _WRITERS[sig]) for key, sig in items[fixed:])
        self._last_head = _entry_head(last_key, "s")

    def body(self, rows: Iterable[Row], last: str | None = None) -> bytes:
        """The reply's body: the array of `rows`, the last carrying `last` (if given)
        under `last_key`."""
        parts: list[bytes] = [b""]  # the array's length and padding, written last
        at = 8  # the first struct starts 8-aligned after them
        fixed = self._fixed_count
        fixed_args: list[Any] = [None] * (2 * fixed)  # head, value, head, value...
        fixed_args[::2] = self._fixed_heads
        pack = self._fixed_struct.pack
        middles: dict[tuple[Any, ...], bytes] = {}
        rests: dict[tuple[Any, ...], bytes] = {}
        pending = list(rows)
        final = len(pending) - 1
        for n, (source, group, input_, outputs, values) in enumerate(pending):
            text = source.encode()  # inet_ntop's text (or "*"): no NUL to check
            head = _U32(len(text)) + text + b"\0" + _PAD[-(len(text) + 5) & 3]
            rest_key = tuple(values[fixed:])
            if n == final and last is not None:
                rest = self._rest_bytes(rest_key, last)
            elif (found := rests.get(rest_key)) is not None:
                rest = found
            else:
                rest = rests[rest_key] = self._rest_bytes(rest_key, None)
            fixed_args[1::2] = values[:fixed]
            counters = pack(*fixed_args)
            middle_key = (len(head) & 4, group, input_, tuple(outputs), len(rest))
            if (found := middles.get(middle_key)) is not None:
                middle = found
            else:
                middle = middles[middle_key] = self._middle(
                    len(head), group, input_, outputs, len(counters) + len(rest)
                )
            size = len(head) + len(middle) + len(counters) + len(rest)
            parts += (head, middle, counters, rest, _PAD[-size & 7] if n != final else b"")
            at += size + (-size & 7 if n != final else 0)
        parts[0] = _U32(at - 8) + _PAD[4]
        return b"".join(parts)

    def _middle(
        self, start: int, group: str, input_: str, outputs: Sequence[str], details: int
    ) -> bytes:
        """A row's bytes from its group to the start of its details, the row's first
        `start` bytes before them."""
        buf = bytearray(start)
        buf += _string(group)
        buf += _PAD[-len(buf) & 3]
        buf += _string(input_)
        _put_strings(buf, outputs)
        buf += _PAD[-len(buf) & 3]
        buf += _U32(details)
        buf += _PAD[-len(buf) & 7]
        return bytes(buf[start:])

    def _rest_bytes(self, values: tuple[Any, ...], last: str | None) -> bytes:
        """The details entries after the fixed ones (and the page's `last` entry),
        from where the fixed ones end."""
        buf = bytearray(self._fixed_size)
        for (head, write), value in zip(self._rest, values, strict=True):
            buf += _PAD[-len(buf) & 7]
            buf += head
            write(buf, value)
        if last is not None:
            buf += _PAD[-len(buf) & 7]
            buf += self._last_head
            buf += _string(last)
        return bytes(buf[self._fixed_size :])


def _put_strings(buf: bytearray, texts: Sequence[str]) -> None:
    """An `as`: its length (4-aligned), then each string 4-aligned."""
    buf += _PAD[-len(buf) & 3]
    at = len(buf)
    buf += b"\0\0\0\0"
    for text in texts:
        buf += _PAD[-len(buf) & 3]
        buf += _string(text)
    buf[at : at + 4] = _U32(len(buf) - at - 4)


def _put_string(buf: bytearray, text: str) -> None:
    buf += _string(text)  # the entry's head ends 4-aligned


def _put_u64(buf: bytearray, value: int) -> None:
    buf += _U64(value)


def _put_u32(buf: bytearray, value: int) -> None:
    buf += _U32(value)


def _put_bool(buf: bytearray, value: bool) -> None:
    buf += _U32(1 if value else 0)


_WRITERS: dict[str, Callable[[bytearray, Any], None]] = {
    "t": _put_u64,
    "u": _put_u32,
    "b": _put_bool,
    "s": _put_string,
    "as": _put_strings,
}
