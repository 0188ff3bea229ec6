"""A Linux bridge with IGMP/MLD snooping and a querier between a source and a router.

    src:eth0 ── to-src ┐
                       br0 (in namespace sw: snooping on, querier on, IGMPv3/MLDv2)
    rtr:eth0 ── to-rtr ┘

As on a managed switch, a group's traffic reaches the router's port only while the
router is a member (and, for a source-specific membership, only from that source).
`PortCapture` sees every frame that arrives at rtr:eth0, whatever the router joined:
the independent witness. `Prober` sends numbered test packets and a marker that the
bridge forwards in any case; the marker's arrival is the positive event that makes
"this packet did not arrive" a real observation rather than an early look.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .capture import ETH_P_IP, ETH_P_IPV6, PacketCapture
from .netns import PORT, Sender, in_netns, netns_run
from .resource import Resource

SOURCES = {
    "ipv4": ("192.0.2.1", "192.0.2.2", "192.0.2.3"),
    "ipv6": ("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"),
}
ROUTER_ADDRESS = {"ipv4": ("192.0.2.254", 24), "ipv6": ("2001:db8:1::fe", 64)}
BRIDGE_ADDRESS = ("192.0.2.253", 24)  # the IPv4 querier's source (IPv6 uses link-local)
# Flooded by a snooping bridge to every port whatever was joined: link-local IPv4
# groups (224.0.0.0/24) and IPv6 all-nodes (ff02::1).
FLOODED_GROUP = {"ipv4": "224.0.0.1", "ipv6": "ff02::1"}

# Bridge timers in centiseconds. The querier is trusted (and unknown groups stop being
# flooded) one query response interval after it starts; a leave takes effect after
# last_member_count * last_member_interval. Shortened from 10 s and 2 * 1 s.
QUERY_RESPONSE_INTERVAL = 100
LAST_MEMBER_INTERVAL = 20

_MAGIC = b"mfcj"
_TAG = struct.Struct("!4sIH")  # magic, round, index within the round
MARKER_INDEX = 0xFFFF
ROUND_PACE = 0.05  # seconds between rounds of Prober.until: ~20 rounds/s, not a flood


@dataclass(frozen=True)
class Flow:
    """UDP datagrams from `source` to `group` (both as text)."""

    source: str
    group: str

    @property
    def family(self) -> str:
        return "ipv6" if ":" in self.group else "ipv4"


@dataclass(frozen=True)
class Datagram:
    source: str
    group: str
    payload: bytes

    def tag(self) -> tuple[int, int] | None:
        """(round, index) of a Prober packet, None for any other datagram."""
        if len(self.payload) < _TAG.size or not self.payload.startswith(_MAGIC):
            return None
        _, number, index = _TAG.unpack_from(self.payload)
        return number, index


@dataclass
class SnoopingLab(Resource):
    """Namespaces src, sw (the bridge) and rtr, removed on exit even after a failure."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    namespaces: list[str] = field(default_factory=list)
    bridge = "br0"
    router_port = "to-rtr"  # the bridge's port towards the router
    source_port = "to-src"
    interface = "eth0"  # in src and in rtr

    @property
    def src(self) -> str:
        return f"mfc-bsrc-{self.suffix}"

    @property
    def sw(self) -> str:
        return f"mfc-bsw-{self.suffix}"

    @property
    def rtr(self) -> str:
        return f"mfc-brtr-{self.suffix}"

    def start(self) -> None:
        for name in (self.src, self.sw, self.rtr):
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            self.namespaces.append(name)
            # Link-local addresses usable at once: MLD reports and the MLD querier
            # need one, and duplicate address detection would delay them by a second.
            for scope in ("all", "default"):
                netns_run(name, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
            netns_run(name, "ip", "link", "set", "lo", "up")
        self._bridge()
        self._veth(self.src, self.source_port)
        self._veth(self.rtr, self.router_port)
        for family, (address, prefix) in ROUTER_ADDRESS.items():
            self._address(self.rtr, address, prefix)
            for source in SOURCES[family]:
                self._address(self.src, source, prefix)

    def _bridge(self) -> None:
        netns_run(
            self.sw, "ip", "link", "add", self.bridge, "type", "bridge",
            "mcast_snooping", "1",
            "mcast_igmp_version", "3", "mcast_mld_version", "2",
            "mcast_query_use_ifaddr", "1",
            "mcast_query_response_interval", str(QUERY_RESPONSE_INTERVAL),
            "mcast_last_member_interval", str(LAST_MEMBER_INTERVAL),
        )  # fmt: skip
        # The querier's start-up delay is the response interval in force when it is
        # switched on: switch it on only once the shorter interval is set.
        netns_run(
            self.sw, "ip", "link", "set", self.bridge, "type", "bridge", "mcast_querier", "1"
        )
        netns_run(self.sw, "ip", "addr", "add", "/".join(map(str, BRIDGE_ADDRESS)),
                  "dev", self.bridge)  # fmt: skip
        netns_run(self.sw, "ip", "link", "set", self.bridge, "up")

    def _veth(self, host_ns: str, port: str) -> None:
        subprocess.run(
            ["ip", "link", "add", self.interface, "netns", host_ns, "type", "veth",
             "peer", "name", port, "netns", self.sw],
            check=True, capture_output=True,
        )  # fmt: skip
        netns_run(self.sw, "ip", "link", "set", port, "master", self.bridge)
        netns_run(self.sw, "ip", "link", "set", port, "up")
        netns_run(host_ns, "ip", "link", "set", self.interface, "up")

    def unplug_router(self) -> None:
        """Delete the router's interface (and with it the bridge's router port)."""
        netns_run(self.rtr, "ip", "link", "del", self.interface)

    def plug_router(self) -> None:
        """Connect the router again: a new interface of the same name, a new index."""
        self._veth(self.rtr, self.router_port)
        for address, prefix in ROUTER_ADDRESS.values():
            self._address(self.rtr, address, prefix)

    def _address(self, ns: str, address: str, prefix: int) -> None:
        extra = ["nodad"] if ":" in address else []
        netns_run(ns, "ip", "addr", "add", f"{address}/{prefix}", "dev", self.interface, *extra)

    def stop(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces.clear()

    # -- views ---------------------------------------------------------------------------
    def router_ifindex(self) -> int:
        with in_netns(self.rtr):
            return socket.if_nametoindex(self.interface)

    def mdb(self) -> list[dict]:
        """The bridge's snooping table (`bridge mdb show`): entries with port, grp, src."""
        text = netns_run(self.sw, "bridge", "-j", "mdb", "show", "dev", self.bridge).stdout
        entries: list[dict] = []
        for block in json.loads(text or "[]"):
            entries.extend(block.get("mdb", []))
        return entries

    def router_port_groups(self) -> set[tuple[str | None, str]]:
        """(source or None, group) the bridge forwards to the router's port."""
        return {
            (entry.get("src"), entry["grp"])
            for entry in self.mdb()
            if entry.get("port") == self.router_port
        }

    def capture(self) -> PortCapture:
        return PortCapture(self.rtr, self.interface)

    def prober(self, capture: PortCapture) -> Prober:
        return Prober(self, capture)


class PortCapture(PacketCapture[Datagram]):
    """Every UDP datagram arriving at `ifname` in `ns` (an AF_PACKET socket: it sees the
    wire, not what the host accepted)."""

    def __init__(self, ns: str, ifname: str) -> None:
        super().__init__(ns, ifname, _parse, receive_buffer=8 << 20)


def _parse(protocol: int, packet: bytes, _at: float) -> Datagram | None:
    if protocol == ETH_P_IP and len(packet) >= 20 and packet[9] == socket.IPPROTO_UDP:
        header = (packet[0] & 0x0F) * 4
        source, group = packet[12:16], packet[16:20]
    elif protocol == ETH_P_IPV6 and len(packet) >= 40 and packet[6] == socket.IPPROTO_UDP:
        header = 40
        source, group = packet[8:24], packet[24:40]
    else:
        return None
    if len(packet) < header + 8 or struct.unpack_from("!H", packet, header + 2)[0] != PORT:
        return None
    return Datagram(
        str(ipaddress.ip_address(source)), str(ipaddress.ip_address(group)), packet[header + 8 :]
    )


@contextlib.contextmanager
def _one_cpu() -> Iterator[None]:
    """Send from one CPU only: veth and the bridge queue packets per CPU, so packets sent
    from one CPU arrive in the order they were sent, and a marker that arrived proves
    that every packet sent before it was forwarded or dropped by then."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # 0: this thread
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


class Prober:
    """Rounds of one numbered packet per flow followed by a marker, sent from src."""

    def __init__(self, lab: SnoopingLab, capture: PortCapture) -> None:
        self.lab = lab
        self.capture = capture
        self.round = 0
        self._senders: dict[tuple[str, str], Sender] = {}

    def marker(self, family: str) -> Flow:
        """A flow the bridge floods to every port: it always reaches the router."""
        return Flow(SOURCES[family][0], FLOODED_GROUP[family])

    def _send(self, flow: Flow, index: int) -> None:
        sender = self._senders.get((flow.family, flow.source))
        if sender is None:
            sender = Sender.open(self.lab.src, self.lab.interface, flow.family, 8, flow.source)
            self._senders[(flow.family, flow.source)] = sender
        sender.send(flow.group, payload=_TAG.pack(_MAGIC, self.round, index))

    def probe(self, flows: Sequence[Flow], marker: Flow, timeout: float = 3.0) -> set[Flow]:
        """One round: the flows that reached the router's port by the time the marker did.
        AssertionError when the marker itself does not arrive within `timeout`."""
        self.round += 1
        number = self.round
        with _one_cpu():
            for index, flow in enumerate(flows):
                self._send(flow, index)
            self._send(marker, MARKER_INDEX)
        arrived = self.capture.wait_for(
            lambda d: d.tag() == (number, MARKER_INDEX) and d.group == marker.group, timeout
        )
        if arrived is None:
            raise AssertionError(f"marker {marker} of round {number} never reached the router")
        return self.arrived(flows, number)

    def arrived(self, flows: Sequence[Flow], first_round: int, last_round: int = 0) -> set[Flow]:
        """The flows of which a packet of rounds first_round..last_round (or only
        first_round) reached the router's port, late ones included."""
        last_round = last_round or first_round
        found = set()
        for datagram in self.capture.received:
            tag = datagram.tag()
            if tag is None or not first_round <= tag[0] <= last_round or tag[1] >= len(flows):
                continue
            flow = flows[tag[1]]
            if (datagram.source, datagram.group) == (flow.source, flow.group):
                found.add(flow)
        return found

    def until(
        self,
        condition: Callable[[set[Flow]], bool],
        flows: Sequence[Flow],
        marker: Flow,
        timeout: float = 10.0,
    ) -> set[Flow]:
        """Probe until a round's arrivals satisfy `condition`; AssertionError after
        `timeout` naming the last round's arrivals."""
        deadline = time.monotonic() + timeout
        while True:
            arrived = self.probe(flows, marker)
            if condition(arrived):
                return arrived
            if time.monotonic() > deadline:
                shown = sorted(f"({f.source}, {f.group})" for f in arrived)
                raise AssertionError(f"after {timeout} s the last round still saw {shown}")
            # Pace the rounds (each is judged by its own marker, not by this pause).
            self.capture.wait_for(lambda d: False, ROUND_PACE)

    def wait_for_snooping(self, unjoined: Flow, flooded: Flow) -> None:
        """Until the querier is trusted the bridge floods every group: probe until
        `unjoined`, a group nobody joined, stops reaching the router (the flooded
        marker does)."""
        self.until(lambda arrived: unjoined not in arrived, [unjoined], flooded)

    def never_arrives(self, flows: list[Flow], marker: Flow, rounds: int = 5) -> None:
        """`rounds` rounds in which the marker arrives and none of `flows` does, late
        arrivals of any of these rounds included."""
        first = self.round + 1
        for _ in range(rounds):
            self.probe(flows, marker)
        self.probe([], marker)  # one more marker: late packets are in by now
        assert self.arrived(flows, first, first + rounds - 1) == set()

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
