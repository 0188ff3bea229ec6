"""Multicast Router Discovery sockets against the real kernel, behind a real snooping
bridge: the messages on the wire at the bridge's port, and the bridge's own view of
its multicast router ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mfc_dbus.kernel.mrdisc import Advertisement, MrdiscSocket, checksum, decode_advertisement
from mfc_dbus.model import Family
from mfc_lab import in_netns
from mfc_lab.bridge import SnoopingLab
from mfc_lab.mrdisc import Control, ControlCapture, Solicitor, router_ports, wait_until

FAMILIES = ["ipv4", "ipv6"]
SNOOPERS = {"ipv4": "224.0.0.106", "ipv6": "ff02::6a"}
ADVERTISE = {"ipv4": 0x30, "ipv6": 151}
TERMINATE = {"ipv4": 0x32, "ipv6": 153}


@pytest.fixture
def snooping(root) -> Iterator[SnoopingLab]:
    with SnoopingLab() as created:
        yield created


def open_socket(lab: SnoopingLab, family: str) -> MrdiscSocket:
    with in_netns(lab.rtr):
        return MrdiscSocket(Family(family), lab.interface)


def well_formed(control: Control, family: str, kind: dict[str, int]) -> bool:
    return (
        control.type == kind[family]
        and control.destination == SNOOPERS[family]
        and control.hop_limit == 1
        and control.router_alert
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_advertisement_on_the_wire_makes_the_port_a_router_port(snooping, family):
    lab = snooping
    assert lab.router_port not in router_ports(lab.sw, lab.bridge)
    with ControlCapture(lab.sw, lab.router_port) as wire:
        sock = open_socket(lab, family)
        try:
            sock.advertise(Advertisement(20, 125, 2))
            seen = wire.wait_for(lambda c: well_formed(c, family, ADVERTISE), 3.0)
            assert seen is not None, f"no advertisement on the wire: {wire.received}"
            assert decode_advertisement(Family(family), seen.message) == Advertisement(20, 125, 2)
            if family == "ipv4":  # IPv6's is the kernel's, checked by the bridge below
                assert checksum(seen.message) == 0
            else:
                assert seen.source.startswith("fe80:")  # RFC 4286: link-local source
            wait_until(lambda: lab.router_port in router_ports(lab.sw, lab.bridge), 3.0)
            assert router_ports(lab.sw, lab.bridge)[lab.router_port]["type"] == "temp"
        finally:
            sock.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_solicitation_from_another_host_is_read(snooping, family):
    lab = snooping
    sock = open_socket(lab, family)
    solicitor = Solicitor(lab.src, lab.interface, family)
    try:
        sock.advertise(Advertisement(20))  # IPv6: ff02::2 goes to router ports only
        wait_until(lambda: lab.router_port in router_ports(lab.sw, lab.bridge), 3.0)
        with ControlCapture(lab.rtr, lab.interface) as wire:  # what reaches the router
            solicitor.solicit()
            assert wire.wait_for(lambda c: c.type == {"ipv4": 0x31, "ipv6": 152}[family], 3.0)
        # It arrived before the capture returned: it is queued on the socket by now.
        assert sock.read_solicitations() == 1
        assert sock.read_solicitations() == 0
    finally:
        solicitor.close()
        sock.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_termination_on_the_wire(snooping, family):
    lab = snooping
    with ControlCapture(lab.sw, lab.router_port) as wire:
        sock = open_socket(lab, family)
        try:
            sock.terminate()
            seen = wire.wait_for(lambda c: well_formed(c, family, TERMINATE), 3.0)
            assert seen is not None, f"no termination on the wire: {wire.received}"
            assert len(seen.message) >= 4
        finally:
            sock.close()
