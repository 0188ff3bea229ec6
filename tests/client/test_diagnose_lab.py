"""`mfc-dbus diagnose` names what the kernel's counters cannot show, with real packets.

The lab (src -> rtr -> dst0, dst1), a private system bus with python-dbusmock's
polkitd, and mfc-dbusd bus-activated inside the router namespace, shared by the
module. `mfc-dbus` runs inside the router namespace too, as an administrator runs
it on the router: the firewall, the mrules and the links it reads are the router's.
Each flow has a port of its own, so a receiver counts only its own group's packets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab, Receiver, netns_run
from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.daemon import MFC_DBUS_CLI, MFC_DBUSD
from mfc_lab.polkit import MockPolkit

pytestmark = pytest.mark.root

CLI = MFC_DBUS_CLI
FAMILIES = ["ipv4", "ipv6"]
# Two groups per family: the diagnosed one, and one whose packets prove the path works.
GROUPS = {"ipv4": ("233.252.0.1", "233.252.0.2"), "ipv6": ("ff3e::db8:1", "ff3e::db8:2")}
PORTS = (5011, 5012)
RATE = 100  # datagrams per second and flow
ARRIVED = 20  # datagrams of the control flow that show the path carries packets


@dataclass
class World:
    lab: Lab
    bus: PrivateBus

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """mfc-dbus in the router namespace, on the lab's bus."""
        return subprocess.run(
            ["ip", "netns", "exec", self.lab.rtr, *CLI, *args],
            env=self.bus.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        return result.stdout

    def diagnose(self, *args: str) -> tuple[int, dict]:
        result = self.cli("-j", "diagnose", *args, "interval", "1")
        assert result.returncode in (0, 1), result.stderr
        return result.returncode, json.loads(result.stdout)

    def rtr(self, *argv: str, stdin: str | None = None) -> str:
        return netns_run(self.lab.rtr, *argv, input=stdin).stdout


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2: namespaces, a private system bus, mfc-dbusd")
    if shutil.which("nft") is None:
        pytest.skip("needs nftables' nft (scripts/setup.sh installs it)")
    with (
        Lab(downstreams=2) as lab,
        PrivateBus(extra_policy=MOCK_POLKIT_POLICY) as bus,
        MockPolkit(bus),
    ):
        argv = [shutil.which("ip"), "netns", "exec", lab.rtr, MFC_DBUSD, "--state-file",
                str(bus.directory / "state.json"), "--log-level", "debug"]  # fmt: skip
        bus.add_activation(BUS_NAME, argv)
        try:
            yield World(lab, bus)
        finally:
            bus.stop_owner(BUS_NAME)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    yield world
    world.cli("route", "flush")
    world.rtr("nft", "flush", "ruleset")
    for flag in ("-4", "-6"):
        rules = json.loads(world.rtr("ip", "-j", flag, "mrule", "show") or "[]")
        for rule in rules:
            if rule.get("iif") == "up0":
                world.rtr("ip", flag, "mrule", "del", "pref", str(rule["priority"]))
    for ifname in ("up0", "down0", "down1"):
        world.rtr("ip", "link", "set", ifname, "multicast", "on")


class Flow:
    """`RATE` datagrams per second from src to (group, port) while inside the `with`."""

    def __init__(self, lab: Lab, family: str, group: str, port: int) -> None:
        self.sender = lab.sender(family, ttl=8)
        self.target = (group, port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1 / RATE):
            self.sender.send(self.target[0], 1, port=self.target[1])

    def __enter__(self) -> Flow:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sender.close()


def receiver(lab: Lab, n: int, family: str, group: str, port: int) -> Receiver:
    return Receiver.open(lab.dst(n), "eth0", family, group, port)


def codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def message(report: dict, code: str) -> str:
    (found,) = [f["message"] for f in report["findings"] if f["code"] == code]
    return found


def command_in(text: str) -> list[str]:
    """The command a finding tells the administrator to run (the last `...` in it)."""
    return shlex.split(re.findall(r"`([^`]+)`", text)[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_firewall_drop_in_the_forward_hook_is_named(w: World, family: str):
    source = Lab.source_address(family)
    dropped, passed = GROUPS[family]
    for group in (dropped, passed):
        w.ok("route", "add", group, "from", source, "iif", "up0", "oif", "down0")
    ip = "ip" if family == "ipv4" else "ip6"
    w.rtr("nft", "-f", "-", stdin=(
        "table inet mfctest {\n chain forward {\n  type filter hook forward priority 0;\n"
        f"  {ip} daddr {dropped} counter drop\n }}\n}}\n"
    ))  # fmt: skip
    (rule,) = [
        item["rule"]
        for item in json.loads(w.rtr("nft", "-j", "list", "ruleset"))["nftables"]
        if "rule" in item
    ]
    with (
        receiver(w.lab, 0, family, dropped, PORTS[0]) as rx_dropped,
        receiver(w.lab, 0, family, passed, PORTS[1]) as rx_passed,
        Flow(w.lab, family, dropped, PORTS[0]),
        Flow(w.lab, family, passed, PORTS[1]),
    ):
        arrived = rx_passed.wait(ARRIVED, timeout=10)
        assert arrived >= ARRIVED, "the control flow never arrived"
        status, report = w.diagnose(dropped, source)
        healthy_status, healthy = w.diagnose(passed, source)
        assert rx_passed.count > arrived, "the control flow stopped during the diagnosis"
        assert rx_dropped.count == 0, "the firewall rule let packets through"
    # The kernel counted them as forwarded, the firewall dropped them, diagnose says so.
    assert report["routes"][0]["packets_delta"] > 0
    assert (status, codes(report)) == (1, ["firewall"])
    text = message(report, "firewall")
    assert f"nftables rule inet mfctest forward handle {rule['handle']} drops it" in text
    assert "out of down0" in text
    assert (healthy_status, codes(healthy)) == (0, ["forwarding"])


@pytest.mark.parametrize("family", FAMILIES)
def test_route_in_table_100_needs_an_mrule(w: World, family: str):
    source = Lab.source_address(family)
    stuck, control = GROUPS[family]
    w.ok("route", "add", stuck, "from", source, "iif", "up0", "oif", "down1", "table", "100")
    w.ok("route", "add", control, "from", source, "iif", "up0", "oif", "down1")
    with (
        receiver(w.lab, 1, family, stuck, PORTS[0]) as rx_stuck,
        receiver(w.lab, 1, family, control, PORTS[1]) as rx_control,
        Flow(w.lab, family, stuck, PORTS[0]),
        Flow(w.lab, family, control, PORTS[1]),
    ):
        assert rx_control.wait(ARRIVED, timeout=10) >= ARRIVED, "the control flow never arrived"
        status, report = w.diagnose(stuck, source, "table", "100")
        assert rx_stuck.count == 0, "table 100 forwarded without an mrule"
        assert status == 1 and codes(report)[0] == "no-mrule"
        fix = command_in(message(report, "no-mrule"))
        ip = ["ip"] if family == "ipv4" else ["ip", "-6"]
        assert fix == [*ip, "mrule", "add", "iif", "up0", "lookup", "100"]
        w.rtr(*fix)
        assert rx_stuck.wait(ARRIVED, timeout=10) >= ARRIVED, "no packets after adding the mrule"
        status, report = w.diagnose(stuck, source, "table", "100")
    assert (status, codes(report)) == (0, ["forwarding"])


@pytest.mark.parametrize("family", FAMILIES)
def test_interface_with_multicast_off_is_named(w: World, family: str):
    source = Lab.source_address(family)
    group = GROUPS[family][0]
    w.ok("route", "add", group, "from", source, "iif", "up0", "oif", "down0")
    w.rtr("ip", "link", "set", "down0", "multicast", "off")
    # Without a sender the flag is one of the possible causes: a problem.
    status, report = w.diagnose(group, source)
    assert status == 1 and codes(report) == ["no-multicast-flag", "not-joined", "no-packets"]
    text = message(report, "no-multicast-flag")
    assert "its output down0 has multicast off" in text
    assert command_in(text) == ["ip", "link", "set", "down0", "multicast", "on"]
    # The kernel forwards through it all the same (measured): then it is a note.
    with receiver(w.lab, 0, family, group, PORTS[0]) as rx, Flow(w.lab, family, group, PORTS[0]):
        assert rx.wait(ARRIVED, timeout=10) >= ARRIVED
        status, report = w.diagnose(group, source)
    assert (status, codes(report)) == (0, ["no-multicast-flag", "forwarding"])
    assert report["findings"][0]["severity"] == "info"
    w.rtr(*command_in(text))
    status, report = w.diagnose(group, source)
    assert codes(report) == ["not-joined", "no-packets"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_group_not_joined_on_the_input_is_named_when_nothing_arrives(w: World, family: str):
    source = Lab.source_address(family)
    group = GROUPS[family][0]
    w.ok("route", "add", group, "from", source, "iif", "up0", "oif", "down0")
    status, report = w.diagnose(group, source)
    assert status == 1 and codes(report) == ["not-joined", "no-packets"]
    text = message(report, "not-joined")
    assert f"has not joined {group} on up0" in text
    assert f"mgroup from up0 source {source} group {group}" in text
    assert report["findings"][0]["severity"] == "info"  # no snooping bridge on this host
    # Joined on the input (here by a socket in the router): no longer named.
    with Receiver.open(w.lab.rtr, "up0", family, group, PORTS[1]):
        status, report = w.diagnose(group, source)
    assert codes(report) == ["no-packets"]
