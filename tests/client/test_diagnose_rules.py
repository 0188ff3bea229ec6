"""The diagnose rules, fed with the counters the lab measured (see cli_diagnose's docstring).

Measured on Linux 6.x for IPv4 and IPv6 with an (S,G) route up0 -> down0:
10 packets with TTL 1: route packets +10, up0 in_packets +10, down0 out_packets +0;
10 packets with TTL 8: route packets +10, up0 in +10, down0 out +10 (delivered);
10 packets on the wrong input: wrong_if +10, nothing else;
rp_filter dropping the source: no counter moves.
"""

from __future__ import annotations

from dataclasses import replace

from mfc_dbus.cli_diagnose import HostState, Snapshot, diagnose
from mfc_dbus.client import RouteInfo, VifInfo

G, S = "233.252.0.1", "192.0.2.1"


def route(packets=0, wrong_if=0, **kw) -> RouteInfo:
    base = RouteInfo(S, G, "up0", ("down0",), "installed", "ipv4", 0, True, None, (), packets,
                     packets * 36, wrong_if)  # fmt: skip
    return replace(base, **kw)


def vifs(up_in=0, down_out=0, threshold=1) -> list[VifInfo]:
    return [
        VifInfo("up0", 0, "ipv4", 0, 1, False, "installed", up_in, 0, up_in * 36, 0),
        VifInfo("down0", 1, "ipv4", 0, threshold, False, "installed", 0, down_out, 0, 0),
    ]


def snapshot(routes: list[RouteInfo], vif_list: list[VifInfo]) -> Snapshot:
    """The service's counters alone: these rules do not read the host."""
    return Snapshot(routes, vif_list, HostState())


def codes(result) -> list[str]:
    return [f.code for f in result.findings]


def test_no_route():
    result = diagnose(G, None, snapshot([], []), snapshot([], vifs()), 2)
    assert codes(result) == ["no-route"] and not result.healthy
    assert "mfc-dbus route add 233.252.0.1 iif IF oif IF" in result.findings[0].message


def test_route_for_another_group_or_source_does_not_count():
    other = route(group="233.252.0.2")
    assert codes(diagnose(G, None, snapshot([], []), snapshot([other], []), 0)) == ["no-route"]
    assert codes(diagnose(G, "192.0.2.7", snapshot([], []), snapshot([route()], []), 0)) == [
        "no-route"
    ]


def test_pending_names_the_missing_interface():
    pending = route(state="pending", missing=("down0",))
    result = diagnose(G, S, snapshot([pending], []), snapshot([pending], []), 2)
    assert codes(result) == ["pending"]
    assert "down0 does not exist" in result.findings[0].message


def test_ttl_one_counters_arrive_but_do_not_leave():
    before = snapshot([route(packets=4)], vifs(up_in=4))
    after = snapshot([route(packets=14)], vifs(up_in=14))
    result = diagnose(G, S, before, after, 2)
    assert codes(result) == ["ttl"]
    assert "TTL is probably 1" in result.findings[0].message
    assert "10 packets arrived on up0" in result.findings[0].message


def test_ttl_with_a_high_output_threshold_names_it():
    before = snapshot([route(packets=0)], vifs(threshold=16))
    after = snapshot([route(packets=10)], vifs(up_in=10, threshold=16))
    message = diagnose(G, S, before, after, 2).findings[0].message
    assert "above the output threshold (down0 16)" in message


def test_ipv6_says_hop_limit():
    r6 = route(source="2001:db8:1::1", group="ff3e::db8:1", family="ipv6")
    v6 = [replace(v, family="ipv6") for v in vifs(up_in=10)]
    result = diagnose("ff3e::db8:1", None, snapshot([replace(r6, packets=0)], []),
                      snapshot([replace(r6, packets=10)], v6), 1)  # fmt: skip
    assert codes(result) == ["ttl"] and "hop limit" in result.findings[0].message


def test_forwarding_is_healthy():
    before = snapshot([route(packets=14)], vifs(up_in=14))
    after = snapshot([route(packets=24)], vifs(up_in=24, down_out=10))
    result = diagnose(G, S, before, after, 2)
    assert codes(result) == ["forwarding"] and result.healthy


def test_a_blocking_route_is_named_not_called_forwarding():
    """Measured in the lab (tests/client/test_shapes_lab.py): a route with no outputs
    counts every packet that arrives and forwards none."""
    blocking = route(outputs=())
    before = snapshot([replace(blocking, packets=2)], vifs(up_in=2))
    after = snapshot([replace(blocking, packets=7)], vifs(up_in=7))
    result = diagnose(G, S, before, after, 2)
    assert codes(result) == ["blocking"] and not result.healthy
    assert "dropped the 5 packets that arrived on up0" in result.findings[0].message


def test_wrong_input():
    before = snapshot([route(packets=24)], vifs(up_in=24, down_out=10))
    after = snapshot([route(packets=34, wrong_if=10)], vifs(up_in=24, down_out=10))
    result = diagnose(G, S, before, after, 2)
    assert "wrong-input" in codes(result) and not result.healthy
    assert "10 packets arrived on an interface other than its input up0" in str(result.text())


def test_nothing_moves_suggests_sender_and_rp_filter():
    snap = snapshot([route(packets=34)], vifs(up_in=24, down_out=10))
    result = diagnose(G, S, snap, snap, 2)
    assert codes(result) == ["no-packets"]
    assert "rp_filter" in result.findings[0].message
    assert "(34 earlier)" in result.findings[0].message


def test_packets_for_other_sources_on_the_input():
    before = snapshot([route(packets=0)], vifs(up_in=0))
    after = snapshot([route(packets=0)], vifs(up_in=5))
    message = diagnose(G, S, before, after, 2).findings[0].message
    assert "5 packets arrived on up0 for other (S,G)" in message


def test_template_without_learned_source_and_with_one():
    template = route(source="*")
    result = diagnose(G, None, snapshot([template], []), snapshot([template], vifs()), 2)
    assert codes(result) == ["no-source"]
    learned_before = route(state="learned", packets=0)
    learned_after = route(state="learned", packets=10)
    result = diagnose(
        G,
        None,
        snapshot([template, learned_before], vifs()),
        snapshot([template, learned_after], vifs(up_in=10, down_out=10)),
        2,
    )
    assert codes(result) == ["forwarding"]


def test_without_interval_totals_are_used():
    after = snapshot([route(packets=14)], vifs(up_in=14))
    result = diagnose(G, S, snapshot([], []), after, 0)
    assert codes(result) == ["ttl"]
    assert result.json()["healthy"] is False
    assert result.json()["findings"][0]["code"] == "ttl"
