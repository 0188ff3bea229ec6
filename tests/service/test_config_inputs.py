"""`mroute from down+ ...` in the administrator's file: a (*,G) route from every
matching interface of the router, each forwarding real packets (IPv4 and IPv6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfc_dbus.names import BUS_NAME, OBJECT_PATH
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess
from mfc_lab.netns import Receiver, Sender

pytestmark = pytest.mark.root

FAMILIES = ["ipv4", "ipv6"]


def listed_routes(bus: PrivateBus) -> list[tuple[str, str, list[str], str]]:
    """(group, input, outputs, origin) of the configured routes, as ListRoutes says."""
    reply = bus.busctl("--json=short", "call", BUS_NAME, OBJECT_PATH, BUS_NAME,
                       "ListRoutes", "a{sv}", "0").stdout  # fmt: skip
    (routes,) = json.loads(reply)["data"]
    return sorted(
        (group, input, outputs, details["origin"]["data"])
        for _, group, input, outputs, details in routes
        if details["state"]["data"] != "learned"
    )


def test_a_wildcard_input_forwards_from_every_matching_interface(lab: Lab, tmp_path: Path):
    config = tmp_path / "mfc-dbus.conf"
    g4, g6 = Lab.group("ipv4"), Lab.group("ipv6")
    config.write_text(
        f"mroute from down+ group {g4} to up0\nmroute from down+ group {g6} to up0\n"
    )
    with PrivateBus() as bus, ServiceProcess(
        bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
        extra=["--config", str(config)],
    ) as service:  # fmt: skip
        assert listed_routes(bus) == [
            (g4, "down0", ["up0"], f"{config}:1"),
            (g4, "down1", ["up0"], f"{config}:1"),
            (g6, "down0", ["up0"], f"{config}:2"),
            (g6, "down1", ["up0"], f"{config}:2"),
        ]
        for family, group in zip(FAMILIES, (g4, g6), strict=True):
            with Receiver.open(lab.src, "eth0", family, group) as rx:
                for n in (0, 1):  # a sender behind down0, then one behind down1
                    with Sender.open(lab.dst(n), "eth0", family, 8) as tx:
                        tx.send(group, 3, payload=f"down{n}".encode())
                assert rx.wait(6, timeout=10) == 6, family
                got = sorted(data for data, _, _ in rx.received)
                assert got == [b"down0"] * 3 + [b"down1"] * 3, family
        assert service.alive()
        assert "Traceback" not in service.log_text()
