"""Reads that scale, against the real service on a real bus in the lab: `route show`
pages through 120,000 routes and matches the kernel's own read-back; a ListRoutes or
an AddRoutes larger than the bus's message limit is a named error, not a dropped
connection of the service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mfc_dbus.client import BusUnavailable, MfcClient, RouteSpec
from mfc_dbus.errors import LimitExceeded
from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family, format_address
from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab, in_netns
from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.daemon import MFC_DBUS_CLI, MFC_DBUSD
from mfc_lab.polkit import MockPolkit

pytestmark = pytest.mark.root

GROUP = Lab.group("ipv4")
HELD = 120_000  # an unpaged ListRoutes of them is over the bus's 32 MiB
BATCH = 10_000


def specs(first: int, count: int) -> list[RouteSpec]:
    """Exact routes from 10.x.y.z (one per source) to GROUP."""
    return [
        RouteSpec(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", GROUP, "up0", ("down0",))
        for n in range(first, first + count)
    ]


@dataclass
class World:
    lab: Lab
    bus: PrivateBus

    def run(self, coroutine_function):
        async def scenario():
            client = await MfcClient.connect(self.bus.address, timeout=120)
            try:
                return await coroutine_function(client)
            finally:
                await client.close()

        return asyncio.run(scenario())

    def kernel_flows(self) -> set[tuple[str, str]]:
        """The default table's (S,G) from the kernel's rtnetlink dump (about 4 minutes at
        a million entries: ipmr restarts its walk for every 32 KB message)."""
        with in_netns(self.lab.rtr), NetlinkReader() as reader:
            entries = reader.dump_mfc(Family.IPV4, 0)
        return {(format_address(e.source), format_address(e.group)) for e in entries}


def _started(held: int) -> Iterator[World]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2: namespaces, a private system bus, mfc-dbusd")
    with (
        Lab(downstreams=1) as lab,
        PrivateBus(extra_policy=MOCK_POLKIT_POLICY) as bus,
        MockPolkit(bus),
    ):
        argv = [shutil.which("ip"), "netns", "exec", lab.rtr, MFC_DBUSD,
                "--state-file", str(bus.directory / "state.json")]  # fmt: skip
        bus.add_activation(BUS_NAME, argv)
        world = World(lab, bus)

        async def fill(client: MfcClient) -> None:
            for first in range(0, held, BATCH):
                assert await client.add_routes(specs(first, BATCH)) == BATCH

        try:
            world.run(fill)
            yield world
        finally:
            bus.stop_owner(BUS_NAME)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    yield from _started(HELD)


@pytest.fixture(scope="module")
def million() -> Iterator[World]:
    yield from _started(1_000_000)


def route_show_matches_the_kernel(world: World, held: int) -> None:
    shown = subprocess.run(
        [*MFC_DBUS_CLI, "-j", "route", "show"], env=world.bus.env(), capture_output=True,
        text=True, timeout=3600, check=True,
    ).stdout  # fmt: skip
    routes = json.loads(shown)  # one JSON document, written page by page
    listed = [(r["source"], r["group"]) for r in routes]
    assert len(listed) == held and len(set(listed)) == held
    assert set(listed) == world.kernel_flows()
    assert all(r["state"] == "installed" and r["outputs"] == ["down0"] for r in routes)


def test_route_show_pages_through_120k_routes_and_matches_the_kernel(world: World):
    route_show_matches_the_kernel(world, HELD)
    table = subprocess.run(
        [*MFC_DBUS_CLI, "route", "show"], env=world.bus.env(), capture_output=True,
        text=True, timeout=300, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert table[0].split() == ["SOURCE", "GROUP", "INPUT", "OUTPUTS", "STATE", "TABLE"]
    assert len(table) == HELD + 1
    assert table[1].split() == ["10.0.0.0", GROUP, "up0", "down0", "installed", "0"]
    last = HELD - 1
    assert table[-1].split()[0] == f"10.{last >> 16}.{(last >> 8) & 255}.{last & 255}"


def test_an_unpaged_list_too_large_for_the_bus_is_limit_exceeded_and_the_service_stays(
    world: World,
):
    async def scenario(client: MfcClient):
        with pytest.raises(LimitExceeded) as refused:
            await client.call("ListRoutes", "a{sv}", [{}])
        first = await client.route_pages(size=5).__anext__()
        return refused.value.message, [r.source for r in first]

    message, first = world.run(scenario)
    assert "page through them with the filter keys limit" in message and "after" in message
    assert first == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_an_add_routes_too_large_for_the_bus_is_limit_exceeded_before_it_is_sent(world: World):
    too_many = specs(HELD, 600_000)  # about 38 MiB as marshalled

    async def refused(client: MfcClient) -> str:
        with pytest.raises(LimitExceeded) as error:
            await client.add_routes(too_many)
        return error.value.message

    message = world.run(refused)
    assert "split it into batches of at most" in message
    most = int(message.split("at most ")[1].split()[0])
    assert 300_000 <= most < 600_000

    async def sent_anyway(client: MfcClient) -> None:  # what the check prevents
        rows = [[r.source, r.group, r.input, list(r.outputs), {}] for r in too_many]
        with pytest.raises(BusUnavailable):  # dbus-daemon drops the sender's connection
            await client.invoke("AddRoutes", rows, {})

    world.run(sent_anyway)

    async def afterwards(client: MfcClient) -> int:
        return await client.add_routes(too_many[:BATCH]) + len(await client.list_routes())

    assert world.run(afterwards) == BATCH + HELD + BATCH  # the service lost nothing
    assert len(world.kernel_flows()) == HELD + BATCH


@pytest.mark.scale
def test_route_show_pages_through_a_million_routes_and_matches_the_kernel(million: World):
    route_show_matches_the_kernel(million, 1_000_000)
