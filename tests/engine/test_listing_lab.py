"""Counters as ListRoutes reads them (one ioctl per row on a reused request) against
the kernel's rtnetlink dump of the same entries, with real packets forwarded."""

from __future__ import annotations

import ipaddress

import pytest
from engine_helpers import engine_in, route, spin_until

from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns

FAMILIES = [Family.IPV4, Family.IPV6]


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_listed_counters_equal_the_dump_and_the_dump_tables_are_ours(lab: Lab, family):
    group, other = lab.group(family), ("233.252.0.99" if family is Family.IPV4 else "ff3e::db8:99")
    source = lab.source_address(family)
    with engine_in(lab) as engine:
        engine.add_route(route(source, group, "up0", "down0"))
        engine.add_route(route(source, other, "up0", "down0", table=5))
        with lab.receiver(0, family) as rx, lab.sender(family) as tx:
            tx.send(group, 7, payload=b"x" * 100)
            assert spin_until(engine, lambda: rx.count >= 7)
            tx.send(group, 1, payload=b"marker")  # the last packet has arrived too
            assert spin_until(engine, lambda: rx.count >= 8)
        listed = {(s.route.key.table, s.route.key.texts[1]): s for s in engine.list_routes(family)}
        with in_netns(lab.rtr), NetlinkReader() as reader:
            dumped = {(r.table, r.group): r for r in reader.dump_mfc(family)}
        single = engine.add_route(route(source, group, "up0", "down0"))  # the one-route ioctl
    forwarded = listed[(0, group)].counters
    assert forwarded.packets == 8 and forwarded.bytes > 700
    assert single.counters == forwarded
    groups = {(table, text): ipaddress.ip_address(text).packed for table, text in listed}
    assert set(dumped) == {(table, packed) for (table, _), packed in groups.items()}
    for (table, text), status in listed.items():
        entry = dumped[(table, groups[(table, text)])]
        assert (entry.packets, entry.bytes, entry.wrong_if) == tuple(
            (status.counters.packets, status.counters.bytes, status.counters.wrong_if)
        )
    assert listed[(5, other)].counters.packets == 0
