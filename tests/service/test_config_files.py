"""mfc-dbusd reads the administrator's files (mfc-dbus.conf and conf.d/) at start and on
Reload, in the lab with real packets: smcroute's own example configuration as it is,
drop-ins that come and go without a missed packet, a bad file that changes nothing."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess
from mfc_lab.flow import Draining, SteadyFlow, lost

from .daemon_proc import busctl_call

EXAMPLE = Path(__file__).parents[1] / "config" / "smcroute-example.conf"
RATE = 400


def rename_router_interfaces(lab: Lab, names: dict[str, str]) -> None:
    for old, new in names.items():
        for step in (["down"], ["name", new], ["up"]):
            subprocess.run(["ip", "-n", lab.rtr, "link", "set", old, *step], check=True)
            if step[0] == "name":
                old = new


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_smcroutes_example_configuration_forwards_as_it_is(lab: Lab, tmp_path: Path) -> None:
    # The example's interface names in the router: eth0 upstream, eth1 and eth2 towards
    # dst0 and dst1, and a virbr0 (an empty bridge here).
    rename_router_interfaces(lab, {"up0": "eth0", "down0": "eth1", "down1": "eth2"})
    subprocess.run(["ip", "-n", lab.rtr, "link", "add", "virbr0", "type", "bridge"], check=True)
    subprocess.run(["ip", "-n", lab.rtr, "link", "set", "virbr0", "up"], check=True)
    config = tmp_path / "mfc-dbus.conf"
    shutil.copy(EXAMPLE, config)
    with PrivateBus() as bus, ServiceProcess(
        bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
        extra=["--config", str(config)],
    ) as service:  # fmt: skip
        shown = lab.mroute_show()
        assert "(192.168.1.42,225.1.2.3)" in shown.replace(" ", "")
        assert "Iif: eth0" in shown and "Oifs: eth1" in shown
        # The (*,G) lines forward every source's first packets too.
        for group in ("225.3.2.1", "225.0.0.7"):
            with lab.receiver(0, "ipv4", group) as rx0, lab.receiver(1, "ipv4", group) as rx1:
                with lab.sender("ipv4", ttl=8) as tx:
                    tx.send(group, 3)
                assert rx0.wait(3, timeout=5) == 3 and rx1.wait(3, timeout=5) == 3, group
        # phyint eth1 ttl-threshold 3, eth2 5: a packet arriving with TTL 5 leaves eth1
        # only (forwarded when its TTL exceeds the output's threshold).
        with (
            lab.receiver(0, "ipv4", "225.3.2.1") as rx0,
            lab.receiver(1, "ipv4", "225.3.2.1") as rx1,
        ):
            with lab.sender("ipv4", ttl=5) as tx:
                tx.send("225.3.2.1", 3)
            assert rx0.wait(3, timeout=5) == 3  # the same packets went out at once
            assert rx1.drain() == 0 and rx1.count == 0
        # The mgroup lines: the router joined the groups on its interfaces.
        joined = subprocess.run(
            ["ip", "-n", lab.rtr, "maddr", "show", "dev", "eth0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for group in ("225.1.2.3", "225.3.2.1", "225.0.0.0", "225.0.0.255"):
            assert f"inet  {group}" in joined, joined
        virbr0 = subprocess.run(
            ["ip", "-n", lab.rtr, "maddr", "show", "dev", "virbr0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "225.1.2.4" in virbr0, virbr0
        assert "Traceback" not in service.log_text()


def test_drop_ins_come_and_go_on_reload_without_a_missed_packet(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "mfc-dbus.conf"
    steady = Lab.group()
    config.write_text(f"mroute from up0 source {Lab.source_address()} group {steady} to down0\n")
    drop_in = tmp_path / "conf.d" / "50-extra.conf"
    drop_in.parent.mkdir()
    with PrivateBus() as bus, ServiceProcess(
        bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
        extra=["--config", str(config)],
    ) as service:  # fmt: skip
        with lab.receiver(0, "ipv4", steady) as rx:
            with Draining(rx), SteadyFlow(lab, steady, RATE) as flow:
                assert wait_for(lambda: rx.count > 20)
                drop_in.write_text(
                    f"mroute from up0 source {Lab.source_address()} group 233.252.0.99 to down1\n"
                )
                busctl_call(bus, "Reload")
                assert "233.252.0.99" in lab.mroute_show()
                drop_in.unlink()
                busctl_call(bus, "Reload")
                assert "233.252.0.99" not in lab.mroute_show()
                seen = rx.count
                assert wait_for(lambda: rx.count > seen + 20)  # still flowing after
            sent = flow.sent
            assert wait_for(lambda: rx.count >= sent, timeout=5)
            assert lost(rx, sent) == []
        assert "Traceback" not in service.log_text()


def test_a_bad_file_on_reload_changes_nothing_and_says_why(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "mfc-dbus.conf"
    group = Lab.group()
    config.write_text(f"mroute from up0 group {group} to down0\n")
    with PrivateBus() as bus, ServiceProcess(
        bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
        extra=["--config", str(config)],
    ) as service:  # fmt: skip
        listed = busctl_call(bus, "ListRoutes", "a{sv}", "0").stdout
        assert group in listed and f'"origin" s "{config}:1"' in listed, listed
        config.write_text("mroute from up0 group 10.0.0.1 to down0\n")
        refused = busctl_call(bus, "Reload", check=False)
        assert refused.returncode != 0
        assert f"{config}:1:23: group '10.0.0.1' is not a multicast address" in refused.stderr
        assert group in busctl_call(bus, "ListRoutes", "a{sv}", "0").stdout
        with lab.receiver(0, "ipv4", group) as rx, lab.sender("ipv4") as tx:
            tx.send(group, 3)
            assert rx.wait(3, timeout=5) == 3
        assert service.alive()


@pytest.fixture(autouse=True)
def _root(root) -> None:
    """Namespaces, a private bus and the service need root."""
