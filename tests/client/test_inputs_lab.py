"""Several (*,G) routes for one group from different inputs, through `mfc-dbus` and the
real service in the lab, with real packets (IPv4 and IPv6).

The inputs are the router's down0 and down1 (senders in dst0 and dst1), the output is
up0 (the receiver in src): both inputs' sources forward, and removing one route by its
input stops that input's flow and leaves the other's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import test_cli_lab
from test_cli_lab import World

from mfc_lab import Lab
from mfc_lab.netns import Receiver, Sender
from mfc_lab.polkit import wait_until

pytestmark = pytest.mark.root

world = test_cli_lab.world  # the lab, the private bus and the service of those tests
w = test_cli_lab.w

FAMILIES = ["ipv4", "ipv6"]
MARKER_GROUP = {"ipv4": "233.252.0.251", "ipv6": "ff3e::db8:fb"}
MARKER = b"marker"


@contextmanager
def behind_inputs(lab: Lab, family: str) -> Iterator[tuple[Receiver, Receiver, Sender, Sender]]:
    """A receiver of the group and one of the marker group in src, and a sender in dst0
    and dst1 (behind the router's down0 and down1)."""
    with ExitStack() as stack:
        rx = stack.enter_context(Receiver.open(lab.src, "eth0", family, Lab.group(family)))
        seen = stack.enter_context(Receiver.open(lab.src, "eth0", family, MARKER_GROUP[family]))
        senders = [stack.enter_context(Sender.open(lab.dst(n), "eth0", family, 8)) for n in (0, 1)]
        yield rx, seen, senders[0], senders[1]


def payloads(rx: Receiver) -> list[bytes]:
    rx.drain()
    return [data for data, _, _ in rx.received]


def configured(w: World, group: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted(
        (r["source"], r["input"], tuple(r["outputs"]))
        for r in w.json("route", "show", group)
        if r["state"] != "learned"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_two_inputs_forward_and_removing_one_by_its_input_stops_only_it(w: World, family):
    group, marker = Lab.group(family), MARKER_GROUP[family]
    for n in (0, 1):
        w.ok("route", "add", group, "iif", f"down{n}", "oif", "up0", "temporary")
    assert configured(w, group) == [("*", "down0", ("up0",)), ("*", "down1", ("up0",))]
    with behind_inputs(w.lab, family) as (rx, seen, tx0, tx1):
        # The kernel queues at most 4 packets of a flow until its entry is installed.
        tx0.send(group, 3, payload=b"down0")
        tx1.send(group, 3, payload=b"down1")
        assert rx.wait(6, timeout=10) == 6
        assert sorted(payloads(rx)) == [b"down0"] * 3 + [b"down1"] * 3
        learned = {(r["input"], r["state"]) for r in w.json("route", "show", group)}
        assert {("down0", "learned"), ("down1", "learned")} <= learned

        refused = w.cli("route", "del", group)  # two inputs: which one?
        assert refused.returncode != 0
        assert "from 2 inputs: 'down0', 'down1'" in refused.stderr, refused.stderr
        assert len(configured(w, group)) == 2

        w.ok("route", "del", group, "iif", "down0")
        assert configured(w, group) == [("*", "down1", ("up0",))]
        # The marker route takes down0's packets to src: once the marker (sent after
        # the group's packets, on the same path) has arrived, any forwarded packet of
        # down0's flow would have arrived before it.
        w.ok("route", "add", marker, "iif", "down0", "oif", "up0", "temporary")
        rx.received.clear()
        tx1.send(group, 5, payload=b"down1")
        tx0.send(group, 5, payload=b"down0")
        tx0.send(marker, payload=MARKER)
        assert wait_until(lambda: MARKER in payloads(seen)), "the marker never arrived"
        assert wait_until(lambda: payloads(rx).count(b"down1") == 5)
        assert payloads(rx).count(b"down0") == 0
    w.ok("route", "del", group)  # the only one left: no input needed
    assert configured(w, group) == []


def test_an_exact_route_moves_to_another_input_only_with_replace(w: World):
    group = Lab.group("ipv4")
    source = "198.51.101.1"  # dst1's address, behind down1
    w.ok("route", "add", group, "from", source, "iif", "down0", "oif", "up0", "temporary")
    refused = w.cli("route", "add", group, "from", source, "iif", "down1", "oif", "up0")
    assert refused.returncode != 0
    assert "exists from input 'down0'" in refused.stderr, refused.stderr
    assert configured(w, group) == [(source, "down0", ("up0",))]
    assert "Iif: down0" in w.lab.mroute_show()
    w.ok("route", "add", group, "from", source, "iif", "down1", "oif", "up0", "replace",
         "temporary")  # fmt: skip
    assert configured(w, group) == [(source, "down1", ("up0",))]
    assert "Iif: down1" in w.lab.mroute_show()
    with behind_inputs(w.lab, "ipv4") as (rx, _, _, tx1):
        tx1.send(group, 3, payload=b"down1")
        assert rx.wait(3, timeout=10) == 3
