"""The kernel layer against the real kernel: real packets between lab namespaces."""

from __future__ import annotations

import ipaddress
import select
import socket

import pytest

from mfc_dbus.errors import (
    InvalidArgument,
    KernelBusy,
    LimitExceeded,
    NoSuchInterface,
    NotFound,
)
from mfc_dbus.kernel import UpcallKind, open_mroute_socket
from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns, netns_run

FAMILIES = [Family.IPV4, Family.IPV6]
UP, DOWN0, DOWN1 = 0, 1, 2  # the VIF numbers these tests give up0, down0, down1
MARKER_GROUP = {Family.IPV4: "233.252.0.2", Family.IPV6: "ff3e::db8:2"}
MARKER = b"marker"


class Router:
    """The lab's router namespace with one multicast-routing socket and three VIFs."""

    def __init__(self, lab: Lab, family: Family, table: int = 0) -> None:
        self.lab = lab
        self.family = family
        with in_netns(lab.rtr):
            self.sock = open_mroute_socket(family, table)
            self.netlink = NetlinkReader()
            self.ifindex = {
                name: socket.if_nametoindex(name) for name in ("up0", "down0", "down1")
            }
        self.sock.add_vif(UP, self.ifindex["up0"])
        self.sock.add_vif(DOWN0, self.ifindex["down0"])
        self.sock.add_vif(DOWN1, self.ifindex["down1"])
        self.source = packed(lab.source_address(family))
        self.group = packed(lab.group(family))

    def marker_route(self) -> None:
        """A route of the marker group that stays: see `sent_before_marker`."""
        self.sock.add_mfc(self.source, packed(MARKER_GROUP[self.family]), UP, [DOWN0])

    def sent_before_marker(self, sender, receiver) -> list[bytes]:
        """Send a marker packet down the same path as the packets sent before (its route
        from marker_route), and wait for it on dst0: every packet sent before it has then
        been forwarded or not. The payloads `receiver` got, markers left out."""
        with self.lab.receiver(0, self.family, MARKER_GROUP[self.family]) as marker:
            sender.send(MARKER_GROUP[self.family], 1, payload=MARKER)
            assert marker.wait(1) == 1, "the marker packet did not get through"
        receiver.drain()
        return [data for data, _, _ in receiver.received if data != MARKER]

    def close(self) -> None:
        self.sock.close()
        self.netlink.close()


@pytest.fixture(params=FAMILIES, ids=str)
def router(request, lab):
    created = Router(lab, request.param)
    yield created
    created.close()


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def test_sg_route_forwards_then_delete_stops_it(router):
    lab, family = router.lab, router.family
    router.marker_route()
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
        sender.send(lab.group(family), 20)
        assert receiver.wait(20) == 20
        router.sock.del_mfc(router.source, router.group)
        sender.send(lab.group(family), 20, payload=b"after")
        got = router.sent_before_marker(sender, receiver)
        assert len(got) == 20, "packets still forwarded after the route was deleted"


def test_replacing_outputs_redirects_the_flow(router):
    lab, family = router.lab, router.family
    with (
        lab.receiver(0, family) as first,
        lab.receiver(1, family) as second,
        lab.sender(family) as sender,
    ):
        router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
        sender.send(lab.group(family), 10)
        assert first.wait(10) == 10
        router.sock.add_mfc(router.source, router.group, UP, [DOWN1])
        sender.send(lab.group(family), 10)
        assert second.wait(10) == 10
        assert first.settle() == 10
        # Still one entry: the replace happened in place.
        assert len(router.netlink.dump_mfc(family)) == 1


def test_nocache_upcall_names_source_group_and_input(router):
    lab, family = router.lab, router.family
    with lab.sender(family) as sender:
        sender.send(lab.group(family), 1)
        upcalls = []
        while not upcalls and select.select([router.sock], [], [], 2)[0]:
            upcalls = [u for u in router.sock.read_upcalls() if u.group == router.group]
    assert upcalls, "no NOCACHE upcall arrived"
    upcall = upcalls[0]
    assert upcall.kind is UpcallKind.NOCACHE
    assert upcall.family is family
    assert upcall.source == router.source
    assert upcall.vif == UP
    assert router.sock.read_upcalls() == []  # drained, and reading does not block


def test_queued_first_packet_is_delivered_when_the_route_arrives(router):
    lab, family = router.lab, router.family
    router.marker_route()
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        sender.send(lab.group(family), 1, payload=b"first")
        assert router.sent_before_marker(sender, receiver) == []  # queued, not forwarded
        router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
        receiver.wait(len(receiver.received) + 1)
        assert [data for data, _, _ in receiver.received if data != MARKER] == [b"first"]


def test_counters_and_readback_match_what_was_installed_and_sent(router):
    lab, family = router.lab, router.family
    payload = b"x" * 100
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        router.sock.add_mfc(router.source, router.group, UP, {DOWN0: 1, DOWN1: 1})
        sender.send(lab.group(family), 25, payload=payload)
        assert receiver.wait(25) == 25
    counters = router.sock.sg_counters(router.source, router.group)
    assert counters.packets == 25
    header = 28 if family is Family.IPV4 else 48  # IP + UDP headers
    assert counters.bytes == 25 * (len(payload) + header)
    assert counters.wrong_if == 0
    assert router.sock.vif_counters(UP).in_packets == 25
    assert router.sock.vif_counters(DOWN0).out_packets == 25
    assert router.sock.vif_counters(DOWN1).out_packets == 25

    [entry] = router.netlink.dump_mfc(family)
    assert (entry.source, entry.group, entry.table) == (router.source, router.group, 0)
    assert entry.input == router.ifindex["up0"]
    assert entry.outputs == {router.ifindex["down0"]: 1, router.ifindex["down1"]: 1}
    assert (entry.packets, entry.bytes) == (25, counters.bytes)
    shown = lab.mroute_show(family)
    assert lab.source_address(family) in shown and "down0" in shown and "down1" in shown


def test_closing_the_socket_leaves_no_vif_or_mfc_behind(router):
    router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
    assert router.netlink.dump_mfc(router.family)
    router.sock.close()
    assert router.netlink.dump_mfc(router.family) == []
    proc = "ip_mr_vif" if router.family is Family.IPV4 else "ip6_mr_vif"
    vifs = netns_run(router.lab.rtr, "cat", f"/proc/net/{proc}").stdout.splitlines()
    assert vifs[1:] == []  # only the header line is left
    assert router.lab.mroute_show(router.family).strip() == ""


def test_second_router_on_the_same_table_is_kernel_busy(router):
    with pytest.raises(KernelBusy, match="already owned by another process"):
        with in_netns(router.lab.rtr):
            open_mroute_socket(router.family)


def test_another_table_is_independent(router):
    with in_netns(router.lab.rtr):
        other = open_mroute_socket(router.family, table=10)
    try:
        other.add_vif(0, router.ifindex["up0"])
        other.add_vif(1, router.ifindex["down1"])
        other.add_mfc(router.source, router.group, 0, [1])
        tables = {entry.table for entry in router.netlink.dump_mfc(router.family)}
        assert tables == {10}
        assert router.netlink.dump_mfc(router.family, table=0) == []
    finally:
        other.close()


def test_33rd_vif_is_limit_exceeded(router):
    # 32 VIFs in all: the 3 of the fixture plus 29 on veth ends made in the router.
    for n in range(15):
        netns_run(router.lab.rtr, "ip", "link", "add", f"xa{n}", "type", "veth", "peer", f"xb{n}")
    with in_netns(router.lab.rtr):
        names = [f"x{side}{n}" for n in range(15) for side in "ab"]
        indexes = [socket.if_nametoindex(name) for name in names]
    for vif, ifindex in enumerate(indexes[:29], start=3):
        router.sock.add_vif(vif, ifindex)
    with pytest.raises(LimitExceeded, match="VIF table is full"):
        router.sock.add_vif(32, indexes[29])


def test_errno_cases_raise_their_typed_errors(router):
    with pytest.raises(NotFound, match="no such route"):
        router.sock.del_mfc(router.source, router.group)
    with pytest.raises(NoSuchInterface, match="no such interface or VIF"):
        router.sock.add_vif(5, 65_000)  # unknown ifindex
    with pytest.raises(NoSuchInterface):
        router.sock.del_vif(7)  # a VIF that does not exist
    unicast = packed("198.51.100.7" if router.family is Family.IPV4 else "2001::7")
    with pytest.raises(InvalidArgument, match="not a multicast group"):
        router.sock.add_mfc(router.source, unicast, UP, [DOWN0])
    other = "ff3e::1" if router.family is Family.IPV4 else "233.252.0.9"
    with pytest.raises(InvalidArgument, match=f"group {other} is not an {router.family} address"):
        router.sock.add_mfc(router.source, packed(other), UP, [DOWN0])
    with pytest.raises(InvalidArgument, match=r"source IPv.Address\(.*\) is not an ipv"):
        router.sock.del_mfc(ipaddress.ip_address(router.lab.source_address()), router.group)
