"""ListRoutes' reply as the service writes it (rowbytes.py, encoded.py) is, byte for
byte, the message dbus-fast marshals from the rows as Variants (how the service built
them before), for routes of every kind, and dbus-fast reads it back to the same values."""

from __future__ import annotations

import io
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast._private.unmarshaller import Unmarshaller  # the reading stick, test only

from mfc_dbus.contract import load
from mfc_dbus.model import Counters, Route, RouteKey, RouteStatus, make_route_key
from mfc_dbus.names import PAGE_NEXT
from mfc_dbus.service.convert import Wire
from mfc_dbus.service.encoded import EncodedBody, EncodedReply
from mfc_dbus.service.rowbytes import RowEncoder

CONTRACT = load()
SIGNATURE = CONTRACT.methods["ListRoutes"].out_signature
DETAILS = CONTRACT.methods["ListRoutes"].arg("routes").keys

# The details of a row as the service made them before it wrote rows itself.
OLD_DETAILS: dict[str, Callable[[RouteStatus], Any]] = {
    "packets": attrgetter("counters.packets"),
    "bytes": attrgetter("counters.bytes"),
    "wrong_if": attrgetter("counters.wrong_if"),
    "state": attrgetter("state"),
    "persistent": attrgetter("route.persistent"),
    "owner": lambda status: status.route.owner or "",
    "table": attrgetter("route.key.table"),
    "family": attrgetter("route.key.family.value"),
    "missing": lambda status: list(status.missing_interfaces),
    "origin": lambda status: status.route.origin or "",
}


def old_row(status: RouteStatus) -> tuple[Any, ...]:
    route = status.route
    source, group = route.key.texts
    details = {
        key: Variant(sig, OLD_DETAILS[key](status))
        for key, sig in DETAILS.items()
        if key != PAGE_NEXT
    }
    return source, group, route.input, list(route.outputs), details


def learned(source: str, group: str, table: int = 0) -> Route:
    exact = make_route_key(source, group, table)
    bits = exact.group_len
    return Route(RouteKey(table, exact.sg, bits, bits), "up0", ("down0", "down1"), False)


def every_kind(origin: str = "/etc/mfc-dbus/conf.d/lab.conf:12") -> list[RouteStatus]:
    c = Counters
    return [
        RouteStatus(Route(make_route_key("192.0.2.1", "233.252.0.1"), "up0", ("down0",)),
                    "installed", c(5, 500, 2)),
        RouteStatus(Route(make_route_key("*", "233.252.0.2"), "up0", ("down0", "down1")),
                    "installed", c(21, 2100, 0)),
        RouteStatus(Route(make_route_key("10.1.0.0/16", "239.0.0.0/8", 7), "up0", ("a",)),
                    "installed", c()),
        RouteStatus(Route(make_route_key("192.0.2.9", "233.252.0.9"), "up0", ()),
                    "installed", c(5, 0, 0)),  # blocking: no outputs
        RouteStatus(Route(make_route_key("2001:db8::5", "ff3e::db8:1"), "up0", ("down0",),
                          owner=":1.4242", persistent=False), "installed", c(2**64 - 1, 1, 0)),
        RouteStatus(Route(make_route_key("2001:db8::/32", "ff3e::/16", 2**32 - 1), "up0",
                          ("down0", "a-very-long-nm0")), "pending", c(), ("a-very-long-nm0",)),
        RouteStatus(learned("192.0.2.10", "233.252.0.2"), "learned", c(10, 1000, 1)),
        RouteStatus(learned("2001:db8::9", "ff3e::db8:2", 5), "learned", c(3, 300, 0)),
        RouteStatus(Route(make_route_key("*", "233.252.0.3", input="xv1"), "xv1", ("up0",),
                          origin=origin), "pending", c(), ("xv1", "up0")),
    ]  # fmt: skip


def call() -> Message:
    return Message(destination="org.mfc.Forwarding1", path="/org/mfc/Forwarding1",
                   interface="org.mfc.Forwarding1", member="ListRoutes", signature="a{sv}",
                   body=[{}], serial=4711, sender=":1.77")  # fmt: skip


def old_reply(statuses: list[RouteStatus], next_token: str | None) -> bytes:
    rows = [old_row(status) for status in statuses]
    if next_token is not None and rows:
        rows[-1][4][PAGE_NEXT] = Variant("s", next_token)
    return bytes(Message.new_method_return(call(), SIGNATURE, [rows])._marshall(False))


def new_reply(statuses: list[RouteStatus], next_token: str | None) -> bytes:
    body = Wire(CONTRACT).route_page(statuses, next_token, 1 << 30)
    return bytes(EncodedReply(call(), body)._marshall(False))


def read_back(message: bytes) -> Message:
    return Unmarshaller(io.BytesIO(message)).unmarshall()


@pytest.mark.parametrize("next_token", [None, "04" + "ab" * 20])
@pytest.mark.parametrize("count", [0, 1, 2, 3, 9, 30])
def test_the_written_reply_is_what_dbus_fast_marshals_from_variants(count, next_token):
    statuses = (every_kind() * 4)[:count]
    assert new_reply(statuses, next_token) == old_reply(statuses, next_token)


def test_every_kind_of_row_reads_back_as_the_old_rows():
    statuses = every_kind(origin="/etc/mfc-dbus/conf.d/é.conf:3")
    message = read_back(new_reply(statuses, "00ff"))
    assert message.message_type is MessageType.METHOD_RETURN
    assert (message.reply_serial, message.destination) == (4711, ":1.77")
    assert message.signature == SIGNATURE
    (rows,) = message.body
    old = [old_row(status) for status in statuses]
    old[-1][4][PAGE_NEXT] = Variant("s", "00ff")
    assert [(*row[:4], {k: v.value for k, v in row[4].items()}) for row in rows] == [
        (*row[:4], {k: v.value for k, v in row[4].items()}) for row in old
    ]


def test_non_ascii_text_has_its_length_in_bytes():
    """Where dbus-fast 1.84 writes a length in characters (a message dbus-daemon refuses,
    dropping the service's connection), the written row has it in bytes."""
    encoder = RowEncoder({"origin": "s"}, PAGE_NEXT)
    body = encoder.body([("*", "233.252.0.1", "up0", (), ("é.conf:1",))])
    assert b"\x09\x00\x00\x00\xc3\xa9.conf:1\x00" in body


def test_a_nul_in_a_text_is_refused_before_anything_is_sent():
    encoder = RowEncoder({"origin": "s"}, PAGE_NEXT)
    with pytest.raises(ValueError, match="NUL"):
        encoder.body([("*", "233.252.0.1", "up0", (), ("a\0b",))])


def test_an_encoded_body_is_one_array():
    with pytest.raises(ValueError):
        EncodedBody("s", b"\0" * 8)
