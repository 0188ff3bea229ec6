"""The kernel layer's part of a restart that keeps the table: a socket handed over as
a file descriptor is adopted without MRT_INIT (the kernel's table stays, forwarding
never stops), a descriptor of another kind is refused, and the struct-decoded
rtnetlink dump reads exactly what pyroute2 reads (an independent decoder, kept here
as the reference), counters and tables included."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

import pytest
from pyroute2 import IPRoute

from mfc_dbus.errors import MfcError
from mfc_dbus.kernel import adopt_mroute_socket, open_mroute_socket
from mfc_dbus.kernel.mfcdump import KernelRoute, dump_mfc, our_table_id
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns

FAMILIES = [Family.IPV4, Family.IPV6]


def _key(route):
    return (route.table, route.source, route.group)


def _pyroute2_dump(family: Family) -> list[KernelRoute]:
    """The same dump through pyroute2, which leaves the family-128/129 addresses and
    stats as raw bytes (sometimes with the attribute header still in front)."""
    size = 4 if family is Family.IPV4 else 16
    routes = []
    with IPRoute() as ipr:
        for msg in ipr.get_routes(family=128 if family is Family.IPV4 else 129):
            stats = bytes(msg.get_attr("RTA_MFC_STATS"))[-24:]
            routes.append(KernelRoute(
                family, our_table_id(msg.get_attr("RTA_TABLE"), family),
                bytes(msg.get_attr("RTA_SRC"))[-size:],
                bytes(msg.get_attr("RTA_DST"))[-size:],
                msg.get_attr("RTA_IIF"),
                {hop["oif"]: hop["hops"] for hop in msg.get_attr("RTA_MULTIPATH") or ()},
                *struct.unpack("=QQQ", stats),
            ))  # fmt: skip
    return routes


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_adopted_socket_keeps_the_table_and_forwarding(lab: Lab, family: Family) -> None:
    with in_netns(lab.rtr):
        first = open_mroute_socket(family)
        index = {name: socket.if_nametoindex(name) for name in ("up0", "down0")}
    source = ipaddress.ip_address(lab.source_address(family)).packed
    group = ipaddress.ip_address(lab.group(family)).packed
    first.add_vif(0, index["up0"])
    first.add_vif(1, index["down0"])
    first.add_mfc(source, group, 0, {1: 1})
    kept = os.dup(first.fileno())  # what systemd's fd store holds
    first.close()  # the old process exits: the kept copy holds the table
    adopted = adopt_mroute_socket(family, 0, kept)
    try:
        assert adopted.adopted and adopted.vif_exists(0) and adopted.vif_exists(1)
        assert not adopted.vif_exists(2)
        with lab.receiver(0, family.value) as receiver, lab.sender(family.value) as sender:
            sender.send(lab.group(family), 5)
            assert receiver.wait(5) == 5
        adopted.del_mfc(source, group)  # and it is ours to change
        assert lab.source_address(family) not in lab.mroute_show(family.value)
    finally:
        adopted.close()


def test_a_descriptor_of_another_kind_is_refused(lab: Lab) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(MfcError, match="is not a ipv4 multicast-routing socket"):
            adopt_mroute_socket(Family.IPV4, 0, udp.fileno())
        assert udp.fileno() >= 0  # refused without closing the caller's descriptor
    finally:
        udp.close()


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_fast_dump_reads_what_pyroute2_reads(lab: Lab, family: Family) -> None:
    with in_netns(lab.rtr):
        default, other = open_mroute_socket(family), open_mroute_socket(family, table=10)
        index = {name: socket.if_nametoindex(name) for name in ("up0", "down0", "down1")}
    try:
        for sock in (default, other):
            for slot, name in enumerate(("up0", "down0", "down1")):
                sock.add_vif(slot, index[name])
        base = ipaddress.ip_address(lab.source_address(family))
        group = ipaddress.ip_address(lab.group(family))
        for n in range(50):
            default.add_mfc((base + n).packed, group.packed, 0, {1: 1, 2: 1})
        other.add_mfc(base.packed, group.packed, 0, {2: 1})
        with lab.sender(family.value) as sender, lab.receiver(0, family.value) as receiver:
            sender.send(lab.group(family), 7)  # counters on (base, group) in table 0
            assert receiver.wait(7) == 7
        with in_netns(lab.rtr):
            fast = dump_mfc(family)
            slow = _pyroute2_dump(family)
        assert len(fast) == 51
        assert sorted(fast, key=_key) == sorted(slow, key=_key)
        assert {route.table for route in fast} == {0, 10}
    finally:
        default.close()
        other.close()
