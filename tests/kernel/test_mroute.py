"""The kernel layer against the real kernel: real packets between lab namespaces."""

from __future__ import annotations

import ipaddress
import socket
import time

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
        self.source = ipaddress.ip_address(lab.source_address(family))
        self.group = ipaddress.ip_address(lab.group(family))

    def close(self) -> None:
        self.sock.close()
        self.netlink.close()


@pytest.fixture(params=FAMILIES, ids=str)
def router(request, lab):
    created = Router(lab, request.param)
    yield created
    created.close()


def test_sg_route_forwards_then_delete_stops_it(router):
    lab, family = router.lab, router.family
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
        sender.send(lab.group(family), 20)
        assert receiver.wait(20) == 20
        router.sock.del_mfc(router.source, router.group)
        time.sleep(0.05)
        sender.send(lab.group(family), 20)
        assert receiver.settle() == 20, "packets still forwarded after the route was deleted"


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
        deadline = time.monotonic() + 2
        upcalls = []
        while not upcalls and time.monotonic() < deadline:
            time.sleep(0.01)
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
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        sender.send(lab.group(family), 1, payload=b"first")
        time.sleep(0.05)
        assert receiver.count == 0
        router.sock.add_mfc(router.source, router.group, UP, [DOWN0])
        assert receiver.wait(1) == 1
        assert receiver.received[0][0] == b"first"


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
    assert str(router.source) in shown and "down0" in shown and "down1" in shown


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
    unicast = ipaddress.ip_address("198.51.100.7" if router.family is Family.IPV4 else "2001::7")
    with pytest.raises(InvalidArgument, match="not a multicast group"):
        router.sock.add_mfc(router.source, unicast, UP, [DOWN0])
    with pytest.raises(InvalidArgument, match="not an ipv"):
        other = "ff3e::1" if router.family is Family.IPV4 else "233.252.0.9"
        router.sock.add_mfc(router.source, ipaddress.ip_address(other), UP, [DOWN0])
