"""Group memberships against the real kernel, behind a real snooping bridge.

The router's port on the bridge is watched with a packet socket: a group's packets
reach it only while the router is a member. Every "did not arrive" is read after a
marker sent later from the same CPU did arrive (mfc_lab.bridge.Prober).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import math
import shutil
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from mfc_dbus.engine.joins import Join, JoinManager, JoinState, make_join_key
from mfc_dbus.errors import AlreadyExists, InvalidArgument, NoSuchInterface, NotFound
from mfc_dbus.kernel import abi
from mfc_dbus.kernel.abi import ffi
from mfc_dbus.kernel.membership import (
    Membership,
    Memberships,
    attach_drop_all_filter,
    read_limits,
)
from mfc_dbus.model import Family
from mfc_lab import Receiver, in_netns, netns_run
from mfc_lab.bridge import SOURCES, Datagram, Flow, Prober, SnoopingLab

FAMILIES = ["ipv4", "ipv6"]
SO_GET_FILTER = abi.SO_ATTACH_FILTER  # the same number, read back
GROUPS = {"ipv4": "232.1.1.{}", "ipv6": "ff3e::1:{:x}"}


def group(family: str, n: int) -> str:
    return GROUPS[family].format(n)


def membership(ifindex: int, group_text: str, source: str | None = None) -> Membership:
    return Membership(
        ifindex,
        ipaddress.ip_address(group_text),
        ipaddress.ip_address(source) if source is not None else None,
    )


class Bench:
    """The snooping lab, a capture at the router's port, a prober, and memberships made
    in the router's namespace."""

    def __init__(self, lab: SnoopingLab, family: str) -> None:
        self.lab, self.family = lab, family
        self.capture = lab.capture()
        self.prober: Prober = lab.prober(self.capture)
        self.memberships = Memberships()
        self.ifindex = lab.router_ifindex()
        self.flooded = self.prober.marker(family)

    def source(self, n: int = 0) -> str:
        return SOURCES[self.family][n]

    def join(self, group_text: str, source: str | None = None) -> Membership:
        m = membership(self.ifindex, group_text, source)
        with in_netns(self.lab.rtr):  # sockets are opened in the caller's namespace
            self.memberships.join(m)
        return m

    def wait_for_snooping(self) -> None:
        self.prober.wait_for_snooping(Flow(self.source(), group(self.family, 250)), self.flooded)

    def never_arrives(self, flows: list[Flow], marker: Flow, rounds: int = 5) -> None:
        self.prober.never_arrives(flows, marker, rounds)

    def close(self) -> None:
        self.memberships.close()
        self.prober.close()
        self.capture.close()


@pytest.fixture(params=FAMILIES)
def bench(request, root) -> Iterator[Bench]:
    with SnoopingLab() as lab:
        created = Bench(lab, request.param)
        try:
            created.wait_for_snooping()
            yield created
        finally:
            created.close()


def test_a_group_reaches_the_router_only_after_the_join_and_stops_after_the_leave(bench):
    stream = Flow(bench.source(), group(bench.family, 1))
    kept = Flow(bench.source(), group(bench.family, 2))
    bench.never_arrives([stream, kept], bench.flooded)

    first = bench.join(stream.group)
    bench.join(kept.group)
    bench.prober.until(lambda arrived: {stream, kept} <= arrived, [stream, kept], bench.flooded)
    assert {(None, stream.group), (None, kept.group)} <= bench.lab.router_port_groups()

    with in_netns(bench.lab.rtr):
        bench.memberships.leave(first)
    # The bridge asks for remaining members before it stops: wait for that, with the
    # still-joined group as the marker that proves the path works.
    bench.prober.until(lambda arrived: stream not in arrived, [stream], kept)
    bench.never_arrives([stream], kept)
    assert (None, stream.group) not in bench.lab.router_port_groups()


def test_a_source_specific_join_receives_only_its_source(bench):
    wanted = Flow(bench.source(0), group(bench.family, 3))
    other = Flow(bench.source(1), wanted.group)
    other_flooded = Flow(other.source, bench.flooded.group)  # the other source does send
    bench.join(wanted.group, wanted.source)
    bench.prober.until(lambda arrived: wanted in arrived, [wanted], bench.flooded)
    assert (wanted.source, wanted.group) in bench.lab.router_port_groups()

    first = bench.prober.round + 1
    bench.never_arrives([other], wanted)
    for _ in range(3):
        assert other_flooded in bench.prober.probe([other, other_flooded], wanted)
    assert other not in bench.prober.arrived([other], first, bench.prober.round)


def test_any_source_and_source_specific_joins_of_a_group_keep_both_meanings(bench):
    """On one socket the source-specific join would narrow the any-source join to
    that source; the other source's packets still arriving shows it did not."""
    joined = Flow(bench.source(0), group(bench.family, 4))
    other = Flow(bench.source(1), joined.group)
    bench.join(joined.group)
    bench.join(joined.group, joined.source)
    assert len(bench.memberships.sockets(Family(bench.family))) == 2
    bench.prober.until(lambda arrived: {joined, other} <= arrived, [joined, other], bench.flooded)
    for _ in range(3):
        assert other in bench.prober.probe([other], joined)


def _kernel_groups(ns: str, family: str, ifname: str) -> set[str]:
    """Groups the router's kernel has joined on `ifname` (/proc/net/igmp, igmp6)."""
    with in_netns(ns):
        if family == "ipv4":
            lines = open("/proc/net/igmp").read().splitlines()
            groups, current = set(), None
            for line in lines[1:]:
                if not line.startswith("\t"):
                    current = line.split()[1]
                elif current == ifname:
                    raw = int(line.split()[0], 16)
                    groups.add(str(ipaddress.IPv4Address(struct.pack("=I", raw))))
            return groups
        return {
            str(ipaddress.IPv6Address(bytes.fromhex(fields[2])))
            for fields in (line.split() for line in open("/proc/net/igmp6"))
            if fields[1] == ifname
        }


def test_fifty_joins_on_one_interface_all_receive(bench):
    flows = [Flow(bench.source(), group(bench.family, 100 + n)) for n in range(50)]
    for flow in flows:
        bench.join(flow.group)
    with in_netns(bench.lab.rtr):
        per_socket = read_limits(Family(bench.family)).groups_per_socket
    sockets = bench.memberships.sockets(Family(bench.family))
    if bench.family == "ipv4":
        assert per_socket == 20  # net.ipv4.igmp_max_memberships, the kernel's default
        assert len(sockets) == math.ceil(50 / per_socket)
    else:
        assert per_socket is None  # only the socket's option memory: 2340 groups here
        assert len(sockets) == 1
    assert {f.group for f in flows} <= _kernel_groups(bench.lab.rtr, bench.family, "eth0")
    bench.prober.until(lambda arrived: arrived == set(flows), flows, bench.flooded)
    assert {(None, f.group) for f in flows} <= bench.lab.router_port_groups()


def _stream_datagrams(receiver: Receiver, timeout: float, wanted: int) -> int:
    """Datagrams of the probed stream (index 0 of a round) the receiver got; an IPv6
    receiver bound to :: also gets the flooded markers, which are not counted."""

    def count() -> int:
        tags = (Datagram("", "", payload).tag() for payload, _, _ in receiver.received)
        return sum(1 for tag in tags if tag is not None and tag[1] == 0)

    deadline = time.monotonic() + timeout
    while count() < wanted and time.monotonic() < deadline:
        receiver.wait(len(receiver.received) + 1, timeout=deadline - time.monotonic())
    return count()


def _deliver(bench: Bench, stream: Flow) -> int:
    """Send the stream until it reaches the router, then 5 more rounds that it reaches;
    returns how many of its datagrams arrived at the router's port in all."""
    bench.prober.until(lambda arrived: stream in arrived, [stream], bench.flooded)
    for _ in range(5):
        assert stream in bench.prober.probe([stream], bench.flooded)
    tags = (d.tag() for d in bench.capture.received if d.group == stream.group)
    return sum(1 for tag in tags if tag is not None and tag[1] == 0)


def _attached_filter(sock: socket.socket) -> list[tuple[int, int, int, int]]:
    """The socket's classic BPF program (SO_GET_FILTER). Its length is counted in
    instructions, both ways, so Python's getsockopt would cut the copy to 1 byte."""
    libc = ctypes.CDLL(None, use_errno=True)
    count = ctypes.c_uint32(0)
    assert libc.getsockopt(sock.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, None,
                           ctypes.byref(count)) == 0  # fmt: skip
    program = ctypes.create_string_buffer(8 * count.value)
    assert libc.getsockopt(sock.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, program,
                           ctypes.byref(count)) == 0  # fmt: skip
    return list(struct.iter_unpack("=HBBI", program.raw))


def _receive_queue(sock: socket.socket) -> int:
    queued = bytearray(4)
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, queued)
    return struct.unpack("i", queued)[0]


def test_join_sockets_receive_no_data(bench):
    stream = Flow(bench.source(), group(bench.family, 5))
    bench.join(stream.group)
    # An ordinary receiver on the router gets the stream: the data does reach the host.
    with Receiver.open(bench.lab.rtr, "eth0", bench.family, stream.group) as receiver:
        at_port = _deliver(bench, stream)
        assert _stream_datagrams(receiver, timeout=3.0, wanted=at_port) == at_port
    for sock in bench.memberships.sockets(Family(bench.family)):
        assert _receive_queue(sock) == 0
        with pytest.raises(BlockingIOError):
            sock.recv(65536, socket.MSG_DONTWAIT)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4608  # the minimum
        assert _attached_filter(sock) == [(abi.BPF_RET_K, 0, 0, 0)]  # "ret 0"


def test_the_drop_all_filter_drops_what_a_bound_member_socket_would_receive(bench):
    stream = Flow(bench.source(), group(bench.family, 6))
    with Receiver.open(bench.lab.rtr, "eth0", bench.family, stream.group) as plain:
        with Receiver.open(bench.lab.rtr, "eth0", bench.family, stream.group) as filtered:
            attach_drop_all_filter(filtered.sock)
            at_port = _deliver(bench, stream)
            assert _stream_datagrams(plain, timeout=3.0, wanted=at_port) == at_port
            # Both sockets are offered each datagram at once: the filtered one had its
            # chance by now.
            assert filtered.count == 0
            assert _receive_queue(filtered.sock) == 0


def test_the_join_manager_follows_the_router_interface_through_unplug_and_plug(bench):
    """The manager on the real kernel layer, told of link changes as the engine will."""
    stream = Flow(bench.source(), group(bench.family, 7))
    manager = JoinManager(bench.memberships, {"eth0": bench.ifindex})
    with in_netns(bench.lab.rtr):
        status = manager.add(Join(make_join_key("eth0", "*", stream.group)))
    assert status.state is JoinState.JOINED
    bench.prober.until(lambda arrived: stream in arrived, [stream], bench.flooded)

    bench.lab.unplug_router()
    [status] = manager.interface_disappeared("eth0", bench.ifindex)
    assert status.state is JoinState.WAITING
    assert len(bench.memberships) == 0
    assert bench.memberships.sockets(Family(bench.family)) == []

    bench.lab.plug_router()
    new_index = bench.lab.router_ifindex()
    assert new_index != bench.ifindex
    bench.capture.close()  # the old one watched the deleted interface
    bench.capture = bench.prober.capture = bench.lab.capture()
    bench.never_arrives([stream], bench.flooded, rounds=3)  # a new port: not joined yet
    with in_netns(bench.lab.rtr):
        [status] = manager.interface_appeared("eth0", new_index)
    assert status.state is JoinState.JOINED
    assert bench.memberships.memberships() == {membership(new_index, stream.group)}
    bench.prober.until(lambda arrived: stream in arrived, [stream], bench.flooded)


# -- errors and the kernel's limits (no traffic needed) ----------------------------------------
@pytest.fixture(params=FAMILIES)
def router(request, root) -> Iterator[tuple[SnoopingLab, str, Memberships]]:
    with SnoopingLab() as lab, Memberships() as memberships:
        yield lab, request.param, memberships


def test_errors_are_named_and_say_what_was_wrong(router):
    lab, family, memberships = router
    ifindex = lab.router_ifindex()
    with pytest.raises(InvalidArgument, match="is not a multicast address"):
        membership(ifindex, SOURCES[family][0])
    with pytest.raises(InvalidArgument, match="not a unicast sender"):
        membership(ifindex, group(family, 1), group(family, 2))
    with pytest.raises(InvalidArgument, match="interface index 0 is not valid"):
        membership(0, group(family, 1))
    with in_netns(lab.rtr):
        memberships.join(membership(ifindex, group(family, 1)))
        with pytest.raises(AlreadyExists, match="already joined"):
            memberships.join(membership(ifindex, group(family, 1)))
        with pytest.raises(NotFound, match="not joined"):
            memberships.leave(membership(ifindex, group(family, 2)))
        with pytest.raises(NoSuchInterface, match="no interface has this index"):
            memberships.join(membership(ifindex + 100, group(family, 3)))
    assert len(memberships) == 1
    assert len(memberships.sockets(Family(family))) == 1  # the refused join's socket is gone


def test_more_sources_than_a_socket_holds_go_to_more_sockets(router):
    lab, family, memberships = router
    ifindex = lab.router_ifindex()
    with in_netns(lab.rtr):
        per_group = read_limits(Family(family)).sources_per_group
        assert per_group == {"ipv4": 10, "ipv6": 64}[family]  # igmp_max_msf, mld_max_msf
        sources = [str(ipaddress.ip_address(SOURCES[family][0]) + n) for n in range(per_group + 5)]
        for source in sources:
            memberships.join(membership(ifindex, group(family, 1), source))
        assert len(memberships.sockets(Family(family))) == 2
        mcfilter = open("/proc/net/mcfilter" if family == "ipv4" else "/proc/net/mcfilter6")
        assert sum(1 for line in mcfilter if " eth0 " in line) == len(sources)
        for source in sources:
            memberships.leave(membership(ifindex, group(family, 1), source))
    assert len(memberships) == 0
    assert memberships.sockets(Family(family)) == []


def test_memberships_of_a_deleted_interface_are_left_and_their_sockets_freed(router):
    lab, family, memberships = router
    ifindex = lab.router_ifindex()
    source_a, source_b = SOURCES[family][0], SOURCES[family][1]
    with in_netns(lab.rtr):
        for n in range(25):
            memberships.join(membership(ifindex, group(family, 10 + n)))
        memberships.join(membership(ifindex, group(family, 1), source_a))
        memberships.join(membership(ifindex, group(family, 1), source_b))
        memberships.join(membership(ifindex, group(family, 2), source_a))
    netns_run(lab.rtr, "ip", "link", "del", "eth0")
    # A single source cannot be left once the device is gone (ENODEV): the whole
    # source list of that socket's group goes, and both sources are no longer held.
    memberships.leave(membership(ifindex, group(family, 1), source_a))
    assert membership(ifindex, group(family, 1), source_b) not in memberships
    memberships.leave(membership(ifindex, group(family, 10)))
    dropped = memberships.leave_interface(ifindex)
    assert len(dropped) == 25
    assert len(memberships) == 0
    assert memberships.sockets(Family(family)) == []


# -- the structs, as the C compiler lays them out -------------------------------------------
JOIN_STRUCTS = {
    "struct sockaddr_in": ["sin_family", "sin_port", "sin_addr", "__pad"],
    "struct __kernel_sockaddr_storage": ["ss_family", "__data"],
    "struct group_req": ["gr_interface", "gr_group"],
    "struct group_source_req": ["gsr_interface", "gsr_group", "gsr_source"],
    "struct sock_filter": ["code", "jt", "jf", "k"],
    "struct sock_fprog": ["len", "filter"],
}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc and linux-libc-dev")
def test_join_structs_match_the_kernel_headers(tmp_path):
    headers = ["stddef.h", "stdio.h", "linux/in.h", "linux/in6.h", "linux/filter.h"]
    lines = [f"#include <{header}>" for header in headers] + ["int main(void) {"]
    expected = []
    for name, fields in JOIN_STRUCTS.items():
        lines.append(f'    printf("%zu\\n", sizeof({name}));')
        expected.append(ffi.sizeof(name))
        for field in fields:
            lines.append(f'    printf("%zu\\n", offsetof({name}, {field}));')
            expected.append(ffi.offsetof(name, field))
    lines += ["    return 0;", "}"]
    (tmp_path / "layout.c").write_text("\n".join(lines))
    binary = tmp_path / "layout"
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(binary), str(tmp_path / "layout.c")],
                   check=True)  # fmt: skip
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    assert [int(value) for value in output.split()] == expected
