"""Tables, JSON keys, monitor lines and the one-line error messages."""

from __future__ import annotations

import json

import pytest
from dbus_fast import Message, MessageType, Variant

from mfc_dbus import cli
from mfc_dbus import cli_format as fmt
from mfc_dbus.client import (
    ActivationFailed,
    Event,
    RouteInfo,
    ServiceUnavailable,
    UnexpectedError,
    VifInfo,
    error_from_dbus,
    event_from_message,
)
from mfc_dbus.client_options import make_options
from mfc_dbus.errors import (
    ALL_ERRORS,
    AccessDenied,
    InteractiveAuthorizationRequired,
    InvalidArgument,
    KernelBusy,
    NoSuchInterface,
)
from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH, PENDING_VIF_INDEX

ROUTE_KEYS = [
    "source", "group", "input", "outputs", "state", "family", "table", "persistent",
    "owner", "missing", "packets", "bytes", "wrong_if", "origin",
]  # fmt: skip
VIF_KEYS = [
    "interface", "index", "family", "table", "ttl_threshold", "explicit", "state",
    "in_packets", "out_packets", "in_bytes", "out_bytes", "mrdisc",
]  # fmt: skip


def route_item(source="192.0.2.1", group="233.252.0.1", **extra):
    info = {
        "packets": Variant("t", 12),
        "bytes": Variant("t", 432),
        "wrong_if": Variant("t", 0),
        "state": Variant("s", "installed"),
        "persistent": Variant("b", True),
        "owner": Variant("s", ""),
        "table": Variant("u", 0),
        "family": Variant("s", "ipv4"),
        "missing": Variant("as", []),
        "origin": Variant("s", ""),
    }
    info.update(extra)
    return [source, group, "up0", ["down0", "down1"], info]


def test_route_from_dbus_and_json_keys_are_stable():
    route = RouteInfo.from_dbus(route_item())
    data = fmt.route_json(route)
    assert list(data) == ROUTE_KEYS
    assert data == {
        "source": "192.0.2.1",
        "group": "233.252.0.1",
        "input": "up0",
        "outputs": ["down0", "down1"],
        "state": "installed",
        "family": "ipv4",
        "table": 0,
        "persistent": True,
        "owner": None,
        "missing": [],
        "packets": 12,
        "bytes": 432,
        "wrong_if": 0,
        "origin": None,
    }
    json.dumps(data)  # serialisable as is
    configured = RouteInfo.from_dbus(route_item(origin=Variant("s", "/etc/mfc-dbus/a.conf:3")))
    assert fmt.route_json(configured)["origin"] == "/etc/mfc-dbus/a.conf:3"
    table = fmt.routes_table([configured], stats=False)
    assert "installed config /etc/mfc-dbus/a.conf:3" in table


def test_any_source_is_star_and_missing_keys_default():
    route = RouteInfo.from_dbus(["", "ff3e::1", "up0", ["down0"], {}])
    assert (route.source, route.family, route.state, route.packets) == (
        "*",
        "ipv6",
        "installed",
        0,
    )


def test_vif_from_dbus_pending_index_is_null():
    vif = VifInfo.from_dbus(["down9", PENDING_VIF_INDEX, {"state": Variant("s", "pending")}])
    data = fmt.vif_json(vif)
    assert list(data) == VIF_KEYS
    assert data["index"] is None and data["state"] == "pending"


def test_routes_table_aligns_and_shows_stats_only_when_asked():
    routes = [
        RouteInfo.from_dbus(route_item()),
        RouteInfo.from_dbus(
            route_item(
                "",
                "233.252.0.2",
                state=Variant("s", "pending"),
                missing=Variant("as", ["down1"]),
                owner=Variant("s", ":1.42"),
            )
        ),
    ]
    plain = fmt.routes_table(routes).splitlines()
    assert plain[0].split() == ["SOURCE", "GROUP", "INPUT", "OUTPUTS", "STATE"]
    assert plain[1].split() == ["192.0.2.1", "233.252.0.1", "up0", "down0", "down1", "installed"]
    assert plain[2].split()[:2] == ["*", "233.252.0.2"]
    assert "pending (missing down1) lease" in plain[2]
    assert plain[1].index("233.252.0.1") == plain[0].index("GROUP")  # aligned
    stats = fmt.routes_table(routes, stats=True).splitlines()
    assert stats[0].split()[-3:] == ["PACKETS", "BYTES", "WRONG-IF"]
    assert stats[1].split()[-3:] == ["12", "432", "0"]
    assert stats[1].endswith("0") and len(stats[1]) == len(stats[0])  # right-aligned numbers
    assert fmt.routes_table([]) == ""


def test_table_column_appears_only_for_non_default_tables():
    route = RouteInfo.from_dbus(route_item(table=Variant("u", 7)))
    assert "TABLE" in fmt.routes_table([route])
    assert "TABLE" not in fmt.routes_table([RouteInfo.from_dbus(route_item())])


def test_vifs_table():
    vifs = [
        VifInfo("down0", 1, "ipv4", 0, 1, True, "installed", 0, 10, 0, 360),
        VifInfo("up0", 0, "ipv4", 0, 1, False, "installed", 24, 0, 864, 0),
        VifInfo("gone", None, "ipv4", 0, 3, True, "pending"),
    ]
    lines = fmt.vifs_table(vifs).splitlines()
    assert lines[0].split() == [
        "INDEX", "INTERFACE", "FAMILY", "THRESHOLD", "STATE",
        "IN-PKTS", "IN-BYTES", "OUT-PKTS", "OUT-BYTES",
    ]  # fmt: skip
    assert lines[1].split() == [
        "0",
        "up0",
        "ipv4",
        "1",
        "installed",
        "auto",
        "24",
        "864",
        "0",
        "0",
    ]
    assert lines[2].split()[:2] == ["1", "down0"]
    assert lines[3].split()[:2] == ["-", "gone"]


def signal(member, signature, body, interface=INTERFACE, path=OBJECT_PATH):
    return Message(
        message_type=MessageType.SIGNAL,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )


def test_events_from_signals_and_their_lines():
    added = event_from_message(
        signal("RouteAdded", "sssas", ["", "233.252.0.1", "up0", ["down0", "down1"]])
    )
    assert added == Event(
        "RouteAdded",
        {"source": "*", "group": "233.252.0.1", "input": "up0", "outputs": ["down0", "down1"]},
    )
    assert fmt.event_text(added) == "route added * 233.252.0.1 iif up0 oifs down0 down1"
    assert fmt.event_json(added)["event"] == "RouteAdded"
    vif = event_from_message(signal("VifRemoved", "sus", ["down0", 1, "ipv6"]))
    assert fmt.event_text(vif) == "vif removed down0 index 1 ipv6"
    tabled = event_from_message(
        signal("RouteRemoved", "sssus", ["192.0.2.1", "233.252.0.1", "up0", 7, "ipv4"])
    )
    assert fmt.event_text(tabled) == "route removed 192.0.2.1 233.252.0.1 iif up0 table 7"
    vif7 = event_from_message(signal("VifAdded", "susu", ["down0", 2, "ipv4", 7]))
    assert fmt.event_text(vif7) == "vif added down0 index 2 ipv4 table 7"
    joined = event_from_message(
        signal("GroupJoined", "sssus", ["up0", "192.0.2.1", "232.1.1.1", 3, "ipv4"])
    )
    assert fmt.event_text(joined) == "group joined 192.0.2.1 232.1.1.1 dev up0 table 3"
    left = event_from_message(signal("GroupLeft", "sssus", ["up0", "*", "ff3e::1", 0, "ipv6"]))
    assert fmt.event_text(left) == "group left * ff3e::1 dev up0"
    assert fmt.event_json(left) == {
        "event": "GroupLeft", "interface": "up0", "source": "*", "group": "ff3e::1",
        "table": 0, "family": "ipv6",
    }  # fmt: skip
    props = event_from_message(
        signal(
            "PropertiesChanged",
            "sa{sv}as",
            [INTERFACE, {"RouteCount": Variant("u", 3)}, []],
            interface="org.freedesktop.DBus.Properties",
        )
    )
    assert fmt.event_text(props) == "properties RouteCount=3"
    owner = event_from_message(
        signal(
            "NameOwnerChanged",
            "sss",
            [BUS_NAME, ":1.7", ""],
            interface="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
        )
    )
    assert fmt.event_text(owner) == "service stopped"
    assert event_from_message(signal("Other", "", [])) is None


def test_every_service_error_name_maps_back_to_its_class():
    for cls in ALL_ERRORS:
        error = error_from_dbus(cls.dbus_name, "text", "AddRoute")
        assert type(error) is cls and error.message == "text"
    assert isinstance(error_from_dbus("org.freedesktop.DBus.Error.ServiceUnknown", "x"),
                      ServiceUnavailable)  # fmt: skip
    assert isinstance(error_from_dbus("org.freedesktop.DBus.Error.NameHasNoOwner", "x"),
                      ServiceUnavailable)  # fmt: skip
    assert isinstance(error_from_dbus("org.freedesktop.DBus.Error.Spawn.ChildExited", "x"),
                      ActivationFailed)  # fmt: skip
    unknown = error_from_dbus("com.example.Weird", "odd")
    assert isinstance(unknown, UnexpectedError) and unknown.dbus_name == "com.example.Weird"


@pytest.mark.parametrize(
    "error, method, line, status",
    [
        (
            AccessDenied("denied"),
            "AddRoute",
            "not authorized to manage routes (polkit action org.mfc.Forwarding1.manage-routes); "
            "ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules",
            4,
        ),
        (
            AccessDenied("denied"),
            "AddVif",
            "not authorized to manage interfaces "
            "(polkit action org.mfc.Forwarding1.manage-interfaces); "
            "ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules",
            4,
        ),
        (
            InteractiveAuthorizationRequired("x"),
            "Flush",
            "authentication is required to manage routes (polkit action "
            "org.mfc.Forwarding1.manage-routes); run mfc-dbus on a terminal without "
            "--no-ask-password, or ask an administrator",
            4,
        ),
        (
            ServiceUnavailable("The name is not activatable"),
            "ListRoutes",
            "the mfc-dbus service (org.mfc.Forwarding1) is not running and the bus cannot "
            "start it: is mfc-dbus installed? (systemctl status mfc-dbus)",
            1,
        ),
        (InvalidArgument("group 'x' is bad"), "AddRoute", "group 'x' is bad", 2),
        (NoSuchInterface("no interface 'eth9'"), "AddRoute", "no interface 'eth9'", 1),
        (KernelBusy("owned by pimd"), "AddRoute", "owned by pimd", 1),
    ],
)
def test_error_lines(error, method, line, status):
    error.action = error_from_dbus(error.dbus_name, "", method).action
    assert cli.describe_error(error) == (line, status)


def test_options_are_typed_variants_and_none_is_left_out():
    options = make_options(persistent=False, lease=None, table=3, family="ipv6")
    assert options == {
        "persistent": Variant("b", False),
        "table": Variant("u", 3),
        "family": Variant("s", "ipv6"),
    }


def test_streamed_json_is_the_same_text_as_the_whole_document():
    values = [fmt.route_json(RouteInfo.from_dbus(route_item(f"192.0.2.{n}"))) for n in range(5)]
    for pretty in (False, True):
        stream = fmt.JsonArrayStream(pretty)
        text = stream.items(values[:2]) + stream.items([]) + stream.items(values[2:])
        assert text + stream.close() == fmt.dumps(values, pretty)
        assert fmt.JsonArrayStream(pretty).close() == fmt.dumps([], pretty)


def test_streamed_table_shows_the_table_column_and_only_widens():
    streamed = fmt.StreamedRoutesTable(stats=True)
    first = streamed.page([RouteInfo.from_dbus(route_item())]).splitlines()
    assert first[0].split() == ["SOURCE", "GROUP", "INPUT", "OUTPUTS", "STATE", "TABLE",
                                "PACKETS", "BYTES", "WRONG-IF"]  # fmt: skip
    later = RouteInfo.from_dbus(route_item("2001:db8::1234:5678", "ff3e::db8:1",
                                           table=Variant("u", 7)))  # fmt: skip
    second = streamed.page([later]).splitlines()
    assert len(second) == 1 and second[0].split()[:2] == ["2001:db8::1234:5678", "ff3e::db8:1"]
    assert second[0].index("ff3e::db8:1") > first[1].index("233.252.0.1")  # widened
    assert streamed.page([]) == ""
