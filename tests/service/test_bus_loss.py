"""The data plane does not depend on the bus: dbus-daemon stops, mfc-dbusd keeps the
kernel's table and forwards real packets, then owns its name again when a bus is back
at the same address; calls work and the routes are the same. Also the systemd
notifications (READY, RELOADING, STATUS) on a socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from mfc_dbus.lab import Lab
from mfc_dbus.lab.bus import PrivateBus
from mfc_dbus.lab.daemon import ServiceProcess
from mfc_dbus.names import BUS_NAME

from .daemon_proc import busctl_call
from .harness import running_service

SOURCE = Lab.source_address()
GROUP = Lab.group()


def _delivered(lab: Lab, count: int = 20) -> int:
    with lab.receiver(0) as receiver, lab.sender() as sender:
        sender.send(GROUP, count)
        return receiver.wait(count, timeout=2.0)


def test_bus_restart_keeps_forwarding_and_the_name_comes_back(lab: Lab, tmp_path: Path) -> None:
    with PrivateBus() as bus, ServiceProcess(bus, lab, tmp_path / "state.json",
                                             tmp_path / "mfc-dbusd.log") as service:  # fmt: skip
        busctl_call(bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "1", "down0", "0")
        busctl_call(bus, "AddRoute", "sssasa{sv}", "", "233.252.0.77", "up0", "1", "down0",
                    "1", "persistent", "b", "false")  # fmt: skip
        routes_before = busctl_call(bus, "ListRoutes", "a{sv}", "0", "--json=short").stdout
        table_before = lab.mroute_show()
        assert GROUP in table_before and _delivered(lab) == 20

        bus.stop_daemon()  # the bus goes away; the service must not flush or exit
        assert lab.mroute_show() == table_before
        assert _delivered(lab) == 20
        assert service.alive

        bus.restart_daemon()  # a new dbus-daemon at the same address
        owner = bus.wait_for_name(BUS_NAME, timeout=5.0)
        assert owner == service.pid
        routes_after = busctl_call(bus, "ListRoutes", "a{sv}", "0", "--json=short").stdout
        assert _strip_counters(routes_after) == _strip_counters(routes_before)
        assert lab.mroute_show() == table_before and _delivered(lab) == 20
        busctl_call(bus, "RemoveRoute", "ssa{sv}", SOURCE, GROUP, "0")
        assert GROUP not in lab.mroute_show()
        log = service.log_text()
        assert "lost the bus connection; forwarding goes on, reconnecting" in log
        assert f"{BUS_NAME} owned again" in log


def _strip_counters(listing: str) -> str:
    """ListRoutes JSON without the counters, which moved with the traffic."""
    data = json.loads(listing)["data"][0]
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
