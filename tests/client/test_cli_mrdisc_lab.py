"""`mfc-dbus vif add IF mrdisc` against the real service, behind a real IGMP/MLD
snooping bridge (mfc_lab.bridge): RFC 4286 advertisements on the wire, the bridge's
router-port list, a group nobody joined reaching the router, Solicitations answered,
a Termination when switched off or stopped, and advertising resumed when the
interface comes back.

The bridge's router-port timer (mcast_querier_interval) is set to 25 s, above the 20 s
advertisement interval and below Linux's 255 s default, so that its expiry after a
Termination (the Linux bridge ignores Terminations) is measured in the test's time.
Figures are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from snooping_service import SnoopingService, snooping_service

from mfc_dbus.kernel.mrdisc import Advertisement, decode_advertisement
from mfc_dbus.model import Family
from mfc_dbus.names import BUS_NAME
from mfc_lab.bridge import SOURCES, Flow, Prober, SnoopingLab
from mfc_lab.mrdisc import Control, ControlCapture, Solicitor, router_ports, wait_until

pytestmark = pytest.mark.root

FAMILIES = ["ipv4", "ipv6"]
IF = SnoopingLab.interface
SNOOPERS = {"ipv4": "224.0.0.106", "ipv6": "ff02::6a"}
ADVERTISE = {"ipv4": 0x30, "ipv6": 151}
TERMINATE = {"ipv4": 0x32, "ipv6": 153}
UNJOINED = {"ipv4": "232.1.9.1", "ipv6": "ff3e::9:1"}
ROUTER_PORT_TIMEOUT = 25.0  # seconds: the bridge's mcast_querier_interval here


class World(SnoopingService):
    def vifs(self) -> dict[tuple[str, str], dict]:
        return {(v["interface"], v["family"]): v for v in json.loads(self.ok("-j", "vif", "show"))}

    def router_port(self) -> bool:
        return self.lab.router_port in router_ports(self.lab.sw, self.lab.bridge)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    querier_interval = str(int(ROUTER_PORT_TIMEOUT * 100))  # centiseconds
    with snooping_service(World, ["mcast_querier_interval", querier_interval]) as created:
        yield created


def well_formed(control: Control, family: str, kind: dict[str, int]) -> bool:
    return (
        control.family == family
        and control.type == kind[family]
        and control.destination == SNOOPERS[family]
        and control.hop_limit == 1
        and control.router_alert
    )


def advertisements(wire: ControlCapture, family: str, count: int, timeout: float) -> list:
    """Wait for `count` well-formed advertisements of `family` (already read or coming)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [c for c in wire.received if well_formed(c, family, ADVERTISE)]
        if len(found) >= count:
            return found
        left = deadline - time.monotonic()
        assert left > 0, f"{len(found)} of {count} {family} advertisements: {wire.received}"
        wire.wait_for(lambda c: well_formed(c, family, ADVERTISE), left)


@pytest.mark.parametrize("family", FAMILIES)
def test_mrdisc_on_a_vif_through_the_service(world: World, family: str) -> None:
    lab = world.lab
    capture = lab.capture()
    prober: Prober = lab.prober(capture)
    unjoined = Flow(SOURCES[family][0], UNJOINED[family])
    marker = prober.marker(family)
    try:
        prober.wait_for_snooping(unjoined, marker)  # not joined: not at the router's port
        with ControlCapture(lab.sw, lab.router_port) as wire:
            world.ok("vif", "add", IF, "family", family, "mrdisc")
            first = advertisements(wire, family, 1, 5.0)[0]
            wait_until(world.router_port, 3.0)
            print(f"\n{family}: bridge lists {lab.router_port} as a router port "
                  f"{time.time() - first.at:.3f} s after the first advertisement")  # fmt: skip
            assert world.vifs()[(IF, family)]["mrdisc"] is True
            initial = advertisements(wire, family, 3, 10.0)[:3]
            for seen in initial:
                advertised = decode_advertisement(Family(family), seen.message)
                assert advertised == Advertisement(20, 0, 0)
            gaps = [round(b.at - a.at, 3) for a, b in zip(initial, initial[1:], strict=False)]
            print(f"{family}: initial advertisements {gaps} s apart")
            assert all(1.5 < gap < 2.5 for gap in gaps), gaps
            # The point of it: a group nobody joined now reaches the router.
            prober.until(lambda arrived: unjoined in arrived, [unjoined], marker)

            # A Solicitation from another host is answered long before the periodic one
            # (19.5 s or more after the third initial advertisement).
            solicitor = Solicitor(lab.src, lab.interface, family)
            try:
                asked = time.time()
                solicitor.solicit()
                answer = wire.wait_for(
                    lambda c: c.at > asked and well_formed(c, family, ADVERTISE), 3.0
                )
            finally:
                solicitor.close()
            assert answer is not None, "the solicitation was not answered"
            # At once, or as soon as the rate limit (1 s after the previous one) allows.
            allowed = max(asked, initial[-1].at + 1.0)
            print(f"{family}: solicitation answered in {answer.at - asked:.3f} s "
                  f"({answer.at - allowed:.3f} s after the rate limit allowed it)")  # fmt: skip
            assert answer.at - allowed < 0.2

            # Switched off: a Termination, then the bridge's timer runs out.
            last = [c for c in wire.received if well_formed(c, family, ADVERTISE)][-1]
            world.ok("vif", "add", IF, "family", family)
            termination = wire.wait_for(lambda c: well_formed(c, family, TERMINATE), 3.0)
            assert termination is not None, "no termination on the wire"
            assert world.vifs()[(IF, family)]["mrdisc"] is False
            assert world.router_port()  # Linux ignores Terminations: still listed
            wait_until(lambda: not world.router_port(), ROUTER_PORT_TIMEOUT + 5, pace=0.1)
            gone = time.time()
            print(f"{family}: router port gone {gone - termination.at:.1f} s after the "
                  f"termination, {gone - last.at:.1f} s after the last advertisement "
                  f"(bridge timer {ROUTER_PORT_TIMEOUT} s)")  # fmt: skip
            assert gone - last.at > ROUTER_PORT_TIMEOUT - 1.0  # the timer, not the message
            assert not [
                c for c in wire.received if c.at > termination.at and c.type == ADVERTISE[family]
            ]
    finally:
        prober.close()
        capture.close()
        world.ok("vif", "del", IF, "family", family)


def test_advertising_resumes_when_the_interface_returns_and_stops_with_the_service(
    world: World,
) -> None:
    lab = world.lab
    for family in FAMILIES:
        world.ok("vif", "add", IF, "family", family, "mrdisc")
    with ControlCapture(lab.sw, lab.router_port) as wire:
        for family in FAMILIES:
            advertisements(wire, family, 1, 5.0)
    lab.unplug_router()
    lab.plug_router()  # a new interface of the same name, and a new bridge port
    with ControlCapture(lab.sw, lab.router_port) as wire:
        for family in FAMILIES:
            again = advertisements(wire, family, 2, 10.0)
            assert decode_advertisement(Family(family), again[0].message) == Advertisement(20)
        wait_until(world.router_port, 3.0)
        vifs = world.vifs()  # the service kept running
        assert all(vifs[(IF, family)]["state"] == "installed" for family in FAMILIES)
        assert all(vifs[(IF, family)]["mrdisc"] for family in FAMILIES)

        world.bus.stop_owner(BUS_NAME)  # a stop on purpose: Terminations
        for family in FAMILIES:
            assert wire.wait_for(lambda c, f=family: well_formed(c, f, TERMINATE), 5.0)
