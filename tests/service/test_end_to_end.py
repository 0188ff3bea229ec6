"""End to end in the lab: the real engine in the router namespace, started by bus
activation; busctl from the root namespace; real multicast from src to dst."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.polkit import wait_until

from .daemon_proc import activate_in_router, busctl_call
from .signals import Subscriber

SOURCE = Lab.source_address()
GROUP = Lab.group()


def _flows(lab: Lab, count: int = 5) -> int:
    """How many of `count` datagrams sent from src reach dst0."""
    with lab.receiver(0) as receiver, lab.sender() as sender:
        sender.send(GROUP, count)
        return receiver.wait(count, timeout=1.0)


def test_busctl_route_forwards_signals_lease_and_sigterm(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with PrivateBus() as bus:
        activate_in_router(bus, lab, state)

        async def scenario() -> None:
            subscriber = await Subscriber.connect(bus.address)
            try:
                assert await asyncio.to_thread(_flows, lab) == 0  # nothing routes yet
                # The first call activates mfc-dbusd in the router namespace.
                await asyncio.to_thread(
                    busctl_call, bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0",
                    "1", "down0", "0",
                )  # fmt: skip
                await subscriber.wait_for("RouteAdded", SOURCE, GROUP, "up0", ["down0"])
                await subscriber.wait_for("PropertiesChanged", "org.mfc.Forwarding1")  # RouteCount
                assert GROUP in lab.mroute_show()
                assert await asyncio.to_thread(_flows, lab) == 5

                await asyncio.to_thread(
                    busctl_call, bus, "RemoveRoute", "ssa{sv}", SOURCE, GROUP, "0"
                )
                await subscriber.wait_for("RouteRemoved", SOURCE, GROUP)
                assert GROUP not in lab.mroute_show()
                assert await asyncio.to_thread(_flows, lab) == 0

                await _lease_ends_with_its_client(bus, lab, subscriber)
                await _sigterm_saves_and_flushes(bus, lab, state)
            finally:
                subscriber.close()

        asyncio.run(scenario())


async def _lease_ends_with_its_client(bus: PrivateBus, lab: Lab, subscriber) -> None:
    client = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("lease_client.py")), bus.address,
         SOURCE, GROUP, "up0", "down0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = await asyncio.to_thread(client.stdout.readline)
        assert line.startswith("ready"), line
        owner = line.split()[1]
        listed = await asyncio.to_thread(
            busctl_call, bus, "ListRoutes", "a{sv}", "0", "--json=short"
        )
        routes = json.loads(listed.stdout)["data"][0]
        assert [(r[0], r[1], r[4]["owner"]["data"]) for r in routes] == [(SOURCE, GROUP, owner)]
        assert await asyncio.to_thread(_flows, lab) == 5
    finally:
        client.kill()  # the lease holder leaves the bus abruptly
        client.wait()
    await subscriber.wait_for("RouteRemoved", SOURCE, GROUP)
    assert wait_until(lambda: GROUP not in lab.mroute_show(), timeout=3)
    assert await asyncio.to_thread(_flows, lab) == 0


async def _sigterm_saves_and_flushes(bus: PrivateBus, lab: Lab, state: Path) -> None:
    await asyncio.to_thread(
        busctl_call, bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "1", "down1", "0"
    )
    assert GROUP in lab.mroute_show()
    pid = bus.owner_pid(BUS_NAME)
    assert pid is not None
    await asyncio.to_thread(bus.stop_owner, BUS_NAME)
    assert wait_until(lambda: bus.owner_pid(BUS_NAME) is None, timeout=5)
    assert GROUP not in lab.mroute_show()  # the kernel table was flushed
    assert GROUP in state.read_text()  # the persistent route was saved


@pytest.mark.parametrize("family", ["ipv6"])
def test_ipv6_route_over_busctl(lab: Lab, tmp_path: Path, family: str) -> None:
    group, source = Lab.group(family), Lab.source_address(family)
    with PrivateBus() as bus:
        activate_in_router(bus, lab, tmp_path / "state.json")
        busctl_call(bus, "AddRoute", "sssasa{sv}", source, group, "up0", "1", "down0", "0")
        with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
            deadline = time.monotonic() + 3
            while receiver.count == 0 and time.monotonic() < deadline:
                sender.send(group, 1)
                time.sleep(0.1)
            assert receiver.count > 0
        bus.stop_owner(BUS_NAME)
