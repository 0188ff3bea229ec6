"""Route shapes smcroute users rely on, with the real service, kernel and packets:
single outputs added and removed under a running flow, blocking routes, hairpin
routes, and prefixes with host bits. IPv4 and IPv6; the command runs as a user would
run it, and the receivers and the kernel's counters are the witnesses."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from test_cli_lab import (  # noqa: F401 (world: the module's shared lab, bus and service)
    CLI,
    World,
    delivered_before_marker,
    world,
)

from mfc_lab import Lab
from mfc_lab.flow import Draining, SteadyFlow, lost, numbers
from mfc_lab.netns import Receiver, netns_run
from mfc_lab.polkit import wait_until

pytestmark = pytest.mark.root

FAMILIES = ("ipv4", "ipv6")
RATE = 400  # datagrams per second
OTHER_GROUP = {"ipv4": "233.252.0.61", "ipv6": "ff3e::db8:61"}


@pytest.fixture
def w(world: World) -> Iterator[World]:  # noqa: F811
    world.polkit.set_allowed([])
    yield world
    world.cli("route", "flush")


def counters(w: World, group: str, family: str) -> dict:
    (route,) = [r for r in w.json("-s", "route", "show", group) if r["family"] == family]
    return route


@pytest.mark.parametrize("family", FAMILIES)
def test_single_outputs_come_and_go_while_the_others_miss_nothing(w: World, family: str):
    lab, group, source = w.lab, Lab.group(family), Lab.source_address(family)
    w.ok("route", "add", group, "from", source, "iif", "up0", "oif", "down0")
    with lab.receiver(0, family, group) as rx0, lab.receiver(1, family, group) as rx1:
        with Draining(rx0, rx1), SteadyFlow(lab, group, RATE, family=family) as flow:
            assert wait_until(lambda: rx0.count > 20)
            added = w.ok("route", "add-output", group, "from", source, "oif", "down1")
            assert added.strip() == "outputs: down0 down1"
            assert wait_until(lambda: rx1.count > 20)  # the new output forwards
            removed = w.ok("route", "del-output", group, "from", source, "iif", "up0",
                           "oif", "down1")  # fmt: skip
            after_removal = flow.sent  # numbers from here on were sent after the reply
            assert removed.strip() == "outputs: down0"
            seen = rx0.count
            assert wait_until(lambda: rx0.count > seen + 2 * 20)
        sent = flow.sent
        assert wait_until(lambda: rx0.count >= sent, timeout=5)
    assert sent >= 100 and lost(rx0, sent) == []  # down0 never missed one
    to_down1 = [number for number, _ in numbers(rx1)]
    assert to_down1 and max(to_down1) < after_removal  # down1 stopped with the reply
    # Counted from its first packet, down1 lost none while it was an output either.
    assert sorted(to_down1) == list(range(min(to_down1), max(to_down1) + 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_blocking_route_drops_and_counts(w: World, family: str):
    group, source = Lab.group(family), Lab.source_address(family)
    result = w.cli("route", "add", group, "from", source, "iif", "up0")
    assert result.returncode == 0 and "has no output: a blocking route" in result.stderr
    assert f"{source}  {group}" in w.ok("route", "show") and "(drop)" in w.ok("route", "show")
    assert delivered_before_marker(w, 0, family, group, count=5) == 0
    route = counters(w, group, family)
    assert route["outputs"] == [] and route["state"] == "installed"
    assert route["packets"] == 5 and route["wrong_if"] == 0  # dropped by the kernel, counted
    # The last output removed: forwarding stops, the route stays and counts.
    w.ok("route", "add-output", group, "from", source, "oif", "down0")
    assert delivered_before_marker(w, 0, family, group, count=3) == 3
    assert w.json("route", "del-output", group, "from", source, "oif", "down0") == {"outputs": []}
    assert delivered_before_marker(w, 0, family, group, count=4) == 0
    assert counters(w, group, family)["packets"] == 5 + 3 + 4


def src_receiver(lab: Lab, family: str, group: str) -> Receiver:
    """A receiver on the input's segment: in src, beside the sender (whose own copies
    are not looped back: IP_MULTICAST_LOOP is off), so what it gets came back out of
    the router's input. IPv4 drops a datagram carrying one of the host's own source
    addresses unless accept_local is set (fib_validate_source); the lab's src
    namespace sets it."""
    if family == "ipv4":
        for key in ("all", "eth0"):
            netns_run(lab.src, "sysctl", "-qw", f"net.ipv4.conf.{key}.accept_local=1")
            netns_run(lab.src, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
    return Receiver.open(lab.src, "eth0", family, group)


@pytest.mark.parametrize("source_given", [True, False], ids=["S,G", "*,G"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_hairpin_route_sends_the_flow_back_out_of_its_input(
    w: World, family: str, source_given: bool
):
    lab, group, source = w.lab, OTHER_GROUP[family], Lab.source_address(family)
    where = ["from", source] if source_given else []
    w.ok("route", "add", group, *where, "iif", "up0", "oif", "up0", "down0")
    with src_receiver(lab, family, group) as back, lab.receiver(0, family, group) as rx0:
        with lab.sender(family) as tx:
            tx.send(group)  # a (*,G) route learns the flow on this one (the kernel queues it)
            assert rx0.wait(1, timeout=5) == 1 and back.wait(1, timeout=5) == 1
            tx.send(group, 4)
        assert rx0.wait(5, timeout=5) == 5
        assert back.wait(5, timeout=5) == 5  # every one, the first (queued) one too
        assert all(sender == source for _, sender, _ in back.received)
    shown = lab.mroute_show(family).replace(" ", "")
    assert "Iif:up0" in shown and "Oifs:up0" in shown, shown


@pytest.mark.parametrize("family", FAMILIES)
def test_host_bits_are_masked_and_echoed(w: World, family: str):
    given, network, member, outside = {
        "ipv4": ("225.1.2.3/24", "225.1.2.0/24", "225.1.2.77", "225.1.3.77"),
        "ipv6": ("ff3e::db8:1:2/112", "ff3e::db8:1:0/112", "ff3e::db8:1:77", "ff3e::db8:2:77"),
    }[family]
    result = w.cli("route", "add", given, "iif", "up0", "oif", "down0")
    assert result.returncode == 0
    assert result.stderr == f"mfc-dbus: warning: {given} taken as {network}\n"
    assert [r["group"] for r in w.json("route", "show")] == [network]
    # A new flow's first 4 packets wait in the kernel while the flow is learned.
    assert delivered_before_marker(w, 0, family, member, count=4) == 4  # inside the prefix
    assert delivered_before_marker(w, 0, family, outside, count=4) == 0
    # Over D-Bus as given: the reply of AddOutputs and the RouteAdded signal carry the
    # normalised group; the route is the same one.
    with monitor(w) as events:
        reply = busctl(w, "AddOutputs", "ssasa{sv}", "", given, "1", "down1", "0")
        assert json.loads(reply)["data"] == [["down0", "down1"]]
        assert wait_until(lambda: any(e.get("source") == "*" for e in events()))
    # (The flow learned above follows its template: a RouteAdded of its own.)
    (added,) = [e for e in events() if e.get("event") == "RouteAdded" and e["source"] == "*"]
    assert (added["group"], added["outputs"]) == (network, ["down0", "down1"])
    routes = w.json("route", "show")
    assert [r["group"] for r in routes if r["state"] != "learned"] == [network]


def busctl(w: World, member: str, *args: str) -> str:
    argv = ["busctl", f"--address={w.bus.address}", "--json=short", "call",
            "org.mfc.Forwarding1", "/org/mfc/Forwarding1", "org.mfc.Forwarding1", member,
            *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


class monitor:  # noqa: N801 (used as a context manager, like open)
    """`mfc-dbus -j monitor` in the background; calling the value gives the events so far."""

    def __init__(self, w: World) -> None:
        self.w = w

    def __enter__(self):
        self.proc = subprocess.Popen(
            [*CLI, "-j", "monitor"], env=self.w.bus.env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        while "monitoring" not in (line := self.proc.stderr.readline()):
            assert line and time.monotonic() < deadline, "monitor did not start"
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return lambda: [json.loads(line) for line in list(self.lines)]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def __exit__(self, *exc_info: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.reader.join(5)
