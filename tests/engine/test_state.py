"""The state file's writer and reader (engine/staterecords.py, stateparse.py) on their
own: what a record looks like, what is read back, and where a bad entry is reported.
No root, no kernel."""

from __future__ import annotations

import json

import pytest

from mfc_dbus.engine.stateparse import parse
from mfc_dbus.engine.staterecords import (
    journal_unroute,
    journal_unvif,
    render,
    route_record,
    vif_record,
)
from mfc_dbus.model import Family, Route, VifConfig, make_route_key


def state(routes: list[str], vifs: list[str] | tuple[()] = ()) -> str:
    return render(list(routes), list(vifs))


def test_records_read_back_as_the_same_values():
    routes = [
        Route(make_route_key("10.0.0.1", "233.252.0.1"), "up0", ("down0",)),
        Route(make_route_key("*", "ff3e::/16", 7), "up0", ("down0", "down1")),
        Route(make_route_key("10.1.0.0/16", "239.0.0.0/8"), 'a"b', ("c\\d",)),
    ]
    vifs = [VifConfig("up0", Family.IPV6, 7, ttl_threshold=4)]
    text = state([route_record(r) for r in routes], [vif_record(v) for v in vifs])
    json.loads(text)  # valid JSON, names escaped
    saved = parse(text)
    assert saved.routes == tuple(routes) and saved.vifs == tuple(vifs)
    assert route_record(routes[1]) == (
        '{"source": "*", "group": "ff3e::/16", "table": 7, "input": "up0", '
        '"outputs": ["down0", "down1"]}'
    )


def test_routes_with_the_same_interfaces_share_them():
    text = state(
        [route_record(Route(make_route_key(f"10.0.0.{n}", "233.252.0.1"), "up0", ("down0",)))
         for n in range(1, 4)]  # fmt: skip
    )
    routes = parse(text).routes
    assert len({id(r.outputs) for r in routes}) == 1
    assert len({id(r.input) for r in routes}) == 1


def test_the_journal_replays_on_top():
    key = make_route_key("10.0.0.1", "233.252.0.1")
    first = route_record(Route(key, "up0", ("down0",)))
    journal = "\n".join(
        [
            json.dumps([{"route": json.loads(first)}]),
            f"[{journal_unroute(key)}]",
            json.dumps([{"vif": {"interface": "up0", "family": "ipv4", "ttl_threshold": 3}}]),
            f"[{journal_unvif(Family.IPV4, 0, 'up0')}]",
            json.dumps([{"route": {"group": "233.252.0.2", "input": "up0", "outputs": ["x"]}}]),
            '[{"route": {"gro',  # torn: never acknowledged
        ]
    )
    saved = parse(state([]), journal)
    assert [r.key.texts for r in saved.routes] == [("*", "233.252.0.2")]
    assert saved.vifs == ()


@pytest.mark.parametrize(
    "routes, vifs, journal, message",
    [
        (["[]"], [], "", "route #1: it is not a JSON object"),
        (['{"group": "233.252.0.1", "input": "a", "outputs": ["b"]}', '{"group": "10.0.0.1"}'],
         [], "", "route #2: group '10.0.0.1' is not a multicast address"),
        (['{"group": "233.252.0.1", "input": "a", "outputs": ["b"]}'] * 2, [], "",
         r"route #2: route \(\*, 233.252.0.1\) appears twice"),
        (['{"group": "233.252.0.1", "input": "a", "outputs": "b"}'], [], "",
         "route #1: field 'outputs' must be a list of interface names, not 'b'"),
        (['{"group": "233.252.0.1", "input": "a", "outputs": [["b"]]}'], [], "",
         "route #1: outputs must be interface names"),
        (['{"group": "233.252.0.1", "input": 5, "outputs": ["b"]}'], [], "",
         "route #1: field 'input' must be an interface name, not 5"),
        (['{"group": "233.252.0.1", "input": "a", "outputs": ["b", "b"]}'], [], "",
         "route #1: route .* lists output b more than once"),
        (['{"group": "233.252.0.1", "table": true, "input": "a", "outputs": ["b"]}'], [], "",
         "route #1: table True is not valid"),
        ([], ['{"interface": "a", "family": "ipv5"}'], "", "VIF #1: family 'ipv5' is not valid"),
        ([], ['{"interface": "a", "family": "ipv4", "ttl_threshold": 0}'], "",
         "VIF #1: TTL threshold 0 is not valid"),
        ([], [], '[]\n[{"nope": {}}]\n', "journal line 2: unknown journal operation 'nope'"),
        ([], [], '{}\n', "journal line 1: it is not a list of changes"),
        ([], [], 'x\n', "journal line 1: Expecting value"),
        ([], [], '[{"unroute": {"group": "ff02::1"}}]\n', "journal line 1: group 'ff02::1' has"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_reported_where_it_is(routes, vifs, journal, message):
    with pytest.raises(ValueError, match=message):
        parse(state(routes, vifs), journal)


def test_more_interfaces_than_vifs_is_refused():
    records = [
        f'{{"source": "10.0.0.{n}", "group": "233.252.0.1", "input": "up0", '
        f'"outputs": ["x{n}"]}}'
        for n in range(1, 33)
    ]
    with pytest.raises(ValueError, match="ipv4 table 0 uses 33 interfaces; the kernel allows 32"):
        parse(state(records))
    parse(state(records[:31]))
