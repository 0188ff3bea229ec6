"""The data plane does not depend on the bus: dbus-daemon stops, mfc-dbusd keeps the
kernel's table and forwards real packets, then owns its name again when a bus is back
at the same address; calls work and the routes are the same. Also the systemd
notifications (READY, RELOADING, STATUS) on a socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess
from mfc_lab.flow import Draining, SteadyFlow, longest_gap, lost

from .daemon_proc import busctl_call
from .harness import running_service

SOURCE = Lab.source_address()
GROUP = Lab.group()
ANY_GROUP = "233.252.0.77"
LEASE_GROUP = "233.252.0.78"
LEASE_CLIENT = Path(__file__).with_name("lease_client.py")
RATE = 400  # packets per second, each flow


def test_bus_restart_keeps_forwarding_and_the_name_comes_back(lab: Lab, tmp_path: Path) -> None:
    with PrivateBus() as bus, ServiceProcess(bus, lab, tmp_path / "state.json",
                                             tmp_path / "mfc-dbusd.log") as service:  # fmt: skip
        busctl_call(bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "1", "down0", "0")
        busctl_call(bus, "AddRoute", "sssasa{sv}", "", ANY_GROUP, "up0", "1", "down0",
                    "1", "persistent", "b", "false")  # fmt: skip
        holder = subprocess.Popen(  # a lease holder on the bus that will go away
            [sys.executable, str(LEASE_CLIENT), bus.address, "", LEASE_GROUP, "up0", "down0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().startswith("ready")
            _bus_away_under_traffic(bus, lab, service)
            # Its holder was on the old bus: the lease ended, and the log says why.
            _wait_until(lambda: LEASE_GROUP not in _listed(bus))
            assert "is no longer on the bus: 1 routes removed" in service.log_text()
            busctl_call(bus, "RemoveRoute", "ssa{sv}", SOURCE, GROUP, "0")  # calls work
            assert GROUP not in lab.mroute_show()
        finally:
            holder.kill()
            holder.wait()


def _listed(bus: PrivateBus) -> str:
    return busctl_call(bus, "ListRoutes", "a{sv}", "0", "--json=short").stdout


def _bus_away_under_traffic(bus: PrivateBus, lab: Lab, service: ServiceProcess) -> None:
    with lab.receiver(0) as receiver, lab.receiver(0, group=ANY_GROUP) as any_rx:
        with Draining(receiver, any_rx), SteadyFlow(lab, GROUP, RATE) as flow, \
                SteadyFlow(lab, ANY_GROUP, RATE) as learned:  # fmt: skip
            _wait_until(lambda: len(receiver.received) > RATE // 4)
            _wait_until(lambda: len(any_rx.received) > RATE // 4)
            table_before = lab.mroute_show()
            routes_before = _strip_counters(_listed(bus), without=LEASE_GROUP)

            bus.stop_daemon()  # the bus goes away; the service must not flush or exit
            stopped = time.monotonic()
            arrived = len(receiver.received)
            _wait_until(lambda: time.monotonic() - stopped > 2.0 and
                        len(receiver.received) > arrived + RATE)  # fmt: skip
            assert lab.mroute_show() == table_before
            assert service.alive()

            bus.restart_daemon()  # a new dbus-daemon at the same address
            back = time.monotonic()
            owner = bus.wait_for_name(BUS_NAME, timeout=5.0)
            assert owner == service.pid
            assert time.monotonic() - back < 2.0, "the name came back too late"
            arrived = len(receiver.received)
            _wait_until(lambda: len(receiver.received) > arrived + RATE // 4)
    assert lost(receiver, flow.sent) == [] and lost(any_rx, learned.sent) == []
    print(f"longest gap {longest_gap(receiver) * 1000:.1f} ms")
    assert _strip_counters(_listed(bus), without=LEASE_GROUP) == routes_before
    log = service.log_text()
    assert "lost the bus connection; forwarding goes on, reconnecting" in log
    assert f"{BUS_NAME} owned again" in log


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _strip_counters(listing: str, without: str = "") -> str:
    """ListRoutes JSON without the counters, which moved with the traffic (and without
    the routes of group `without`)."""
    data = [row for row in json.loads(listing)["data"][0] if row[1] != without]
    for row in data:
        for key in ("packets", "bytes", "wrong_if"):
            row[4].pop(key, None)
    return json.dumps(data, sort_keys=True)


def test_systemd_notifications(bus, polkit, tmp_path: Path, monkeypatch) -> None:
    if len(str(tmp_path / "n")) > 100:
        pytest.skip("temporary path too long for a unix socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (service, engine, _c):
            service.reload()
            assert engine.reloads == 1

    asyncio.run(scenario())
    message = listener.recv(4096).decode().splitlines()
    assert message[0] == "RELOADING=1", message
    message = listener.recv(4096).decode().splitlines()
    assert message == ["READY=1", "STATUS=serving: 0 routes, 0 VIFs"], message
    listener.close()
