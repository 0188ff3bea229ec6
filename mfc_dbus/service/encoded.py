"""A method return whose body the service wrote in wire format itself (rowbytes.py).

dbus-fast has no public way to send a body that is already marshalled. The reply is a
Message subclass whose `_marshall` (a private name, like upstream.py's socket) lets
dbus-fast write the header for an empty body of the same signature, then puts the
written body in that empty one's place and its length in the header.
tests/service/test_rowbytes.py fails if a dbus-fast release changes what this relies
on: its asyncio writer calling `_marshall`, and the header's layout (the D-Bus spec's).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dbus_fast import Message, MessageType

_U32 = struct.Struct("<I")
_FIXED_HEADER = 16  # endianness, type, flags, version, body length, serial, fields length


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A reply's body of one array argument of `signature`, as little-endian bytes."""

    signature: str
    data: bytes

    def __post_init__(self) -> None:
        if not self.signature.startswith("a") or len(self.data) < 8:
            raise ValueError(f"an encoded body is one array, not ({self.signature})")


class EncodedReply(Message):
    """The method return to `call` carrying `body`."""

    def __init__(self, call: Message, body: EncodedBody) -> None:
        super().__init__(
            message_type=MessageType.METHOD_RETURN,
            reply_serial=call.serial,
            destination=call.sender,
            signature=body.signature,
            body=[[]],  # an empty array: dbus-fast writes the header for it
        )
        self.encoded = body.data

    def _marshall(self, negotiate_unix_fd: bool) -> bytearray:
        empty = super()._marshall(negotiate_unix_fd)
        if empty[0:1] != b"l":
            raise TypeError("dbus-fast wrote a big-endian header; the body is little-endian")
        (fields,) = _U32.unpack_from(empty, 12)
        header = _FIXED_HEADER + fields
        header += -header & 7  # the body starts 8-aligned
        (empty_body,) = _U32.unpack_from(empty, 4)
        if header + empty_body != len(empty):
            raise TypeError("dbus-fast's message layout is not the D-Bus one")
        message = bytearray(empty[:header])
        _U32.pack_into(message, 4, len(self.encoded))
        message += self.encoded
        return message
