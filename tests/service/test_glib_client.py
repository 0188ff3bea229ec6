"""A GLib client (Gio.DBusProxy from PyGObject, run by the distribution's Python) mirrors
the routes and VIFs of two tables from the signals alone, while routes come and go in
both, and its mirror equals ListRoutes and ListVifs at the end. The real service runs
in the lab's router namespace, started by bus activation through the proxy itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfc_dbus.client import MfcClient, RouteSpec
from mfc_dbus.names import BUS_NAME, INTERFACE_XML
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus, data_file

from .daemon_proc import activate_in_router

SYSTEM_PYTHON = "/usr/bin/python3"
MIRROR = str(Path(__file__).with_name("glib_mirror.py"))
G1, G2, G6 = "233.252.0.1", "233.252.0.2", "ff3e::db8:1"
S1, S6 = "10.0.0.1", "2001:db8:1::1"


def _has_gi() -> bool:
    probe = [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gio', '2.0')"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not _has_gi(), reason="needs python3-gi and gir1.2-glib-2.0 (make setup installs them)"
)


@pytest.fixture
def glib_client(lab: Lab, tmp_path: Path) -> Iterator[tuple[PrivateBus, subprocess.Popen]]:
    with PrivateBus() as bus:
        activate_in_router(bus, lab, tmp_path / "state.json")
        mirror = subprocess.Popen(
            [SYSTEM_PYTHON, MIRROR, bus.address, str(data_file("dbus", INTERFACE_XML))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            yield bus, mirror
        finally:
            bus.stop_owner(BUS_NAME)  # the activated service first: it outlives its bus
            if mirror.poll() is None:
                mirror.kill()
            mirror.wait()
            for pipe in (mirror.stdin, mirror.stdout, mirror.stderr):
                pipe.close()


async def _changes(client: MfcClient) -> None:
    """Routes come and go in tables 0 and 5, IPv4 and IPv6, one call and batches."""
    for table, outputs in ((0, ["down0"]), (5, ["down1"])):  # the same (S,G) twice
        await client.add_route(S1, G1, "up0", outputs, table=table, persistent=False)
        await client.add_route("*", G2, "up0", ["down0", "down1"], table=table)
        await client.add_route(S6, G6, "up0", outputs, table=table)
    await client.add_route(S1, G1, "up0", ["down0", "down1"], table=5)  # replaced in place
    await client.remove_route(S1, G1, table=0)  # table 5's stays
    await client.remove_route("*", G2, table=5)  # table 0's stays
    batch = [RouteSpec(f"10.0.1.{n}", G2, "up0", ("down0",), table=5) for n in range(1, 21)]
    assert await client.add_routes(batch) == 20
    assert await client.flush(family="ipv6", table=5) == 1
    await client.add_route(S6, G6, "up0", ["down0", "down1"], table=5)
    await client.remove_route("10.0.1.7", G2, table=5)
    # (*,G2) from a second input, then the first input's removed; an exact (S,G) moved.
    await client.add_route("*", G2, "down1", ["down0"])
    await client.remove_route("*", G2, input="up0")
    await client.add_route(S6, G6, "down1", ["down0"], table=5, replace=True)


def test_glib_proxy_mirrors_two_tables_from_signals(glib_client) -> None:
    bus, mirror = glib_client
    assert mirror.stdout.readline() == "ready\n", mirror.stderr.read()

    async def drive() -> None:
        async with await MfcClient.connect(bus.address) as client:
            await _changes(client)

    asyncio.run(drive())
    mirror.stdin.write("dump\n")
    mirror.stdin.flush()
    line = mirror.stdout.readline()
    assert line, mirror.stderr.read()
    seen = json.loads(line)
    mirror.stdin.close()
    assert mirror.wait(10) == 0
    stderr = mirror.stderr.read()
    assert "Dropping signal" not in stderr and "WARNING" not in stderr, stderr

    routes = seen["routes"]
    assert routes["mirror"] == routes["listed"]
    keys = {tuple(row[:4]) for row in routes["listed"]}
    assert (5, "ipv4", S1, G1) in keys and (0, "ipv4", S1, G1) not in keys
    assert [0, "ipv4", "*", G2, "down1", ["down0"]] in routes["listed"]
    assert (5, "ipv4", "*", G2) not in keys
    assert (0, "ipv4", "*", G2, "up0") not in {tuple(row[:5]) for row in routes["listed"]}
    assert [5, "ipv6", S6, G6, "down1", ["down0"]] in routes["listed"]
    assert {(0, "ipv6", S6, G6), (5, "ipv6", S6, G6)} <= keys
    assert len(keys) == 4 + 19
    assert [5, "ipv4", S1, G1, "up0", ["down0", "down1"]] in routes["listed"]
    vifs = seen["vifs"]
    assert vifs["mirror"] == vifs["listed"]
    assert {(row[1], row[2]) for row in vifs["listed"]} == {
        ("ipv4", 0), ("ipv4", 5), ("ipv6", 0), ("ipv6", 5),
    }  # fmt: skip
    assert seen["signals"] > 30
