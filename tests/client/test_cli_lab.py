"""Every mfc-dbus command against the real service, in the lab, with real packets.

One lab (src -> rtr -> dst0, dst1), one private system bus with python-dbusmock's
polkitd, and mfc-dbusd started by bus activation inside the router namespace, shared
by the module; every test leaves no route and no explicit VIF behind. The command
runs as a separate process, as a user would run it; `ip mroute show` and the
receivers in dst0/dst1 are the independent witnesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mfc_dbus
from mfc_dbus.client import MfcClient
from mfc_dbus.errors import InvalidArgument
from mfc_dbus.names import ACTION_MANAGE_ROUTES, BUS_NAME, OBJECT_PATH
from mfc_lab import Lab
from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.daemon import MFC_DBUS_CLI, MFC_DBUSD
from mfc_lab.netns import Receiver
from mfc_lab.polkit import MockPolkit, ThrowawayUser, wait_until
from mfc_lab.users import client_argv, client_env

pytestmark = pytest.mark.root

CLI = MFC_DBUS_CLI
G4 = Lab.group("ipv4")
G6 = Lab.group("ipv6")
S4 = Lab.source_address("ipv4")


@dataclass
class World:
    lab: Lab
    bus: PrivateBus
    polkit: MockPolkit

    def cli(self, *args: str, stdin: str | None = None, env: dict | None = None):
        return subprocess.run(
            [*CLI, *args],
            env=env or self.bus.env(),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.cli(*args, stdin=stdin)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        assert result.stderr == "", result.stderr
        return result.stdout

    def json(self, *args: str, stdin: str | None = None):
        return json.loads(self.ok("-j", *args, stdin=stdin))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2: namespaces, a private system bus, mfc-dbusd")
    with (
        Lab(downstreams=2) as lab,
        PrivateBus(extra_policy=MOCK_POLKIT_POLICY) as bus,
        MockPolkit(bus) as polkit,
    ):
        state = bus.directory / "state.json"
        argv = [shutil.which("ip"), "netns", "exec", lab.rtr, MFC_DBUSD,
                "--state-file", str(state), "--log-level", "debug"]  # fmt: skip
        bus.add_activation(BUS_NAME, argv)
        try:
            yield World(lab, bus, polkit)
        finally:
            bus.stop_owner(BUS_NAME)


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.polkit.set_allowed([])
    yield world
    world.cli("route", "flush")
    for vif in json.loads(world.cli("-j", "vif", "show").stdout or "[]"):
        if vif["explicit"]:
            world.cli("vif", "del", vif["interface"], "family", vif["family"])
    for join in json.loads(world.cli("-j", "group", "show").stdout or "[]"):
        if not join["origin"]:
            where = [join["interface"], join["group"], "table", str(join["table"])]
            world.cli("group", "leave", *where, "source", join["source"])


def delivered(lab: Lab, n: int, family: str, group: str, count: int = 5, ttl: int = 8) -> int:
    """Send `count` datagrams from src; how many reached dst<n>."""
    with lab.receiver(n, family, group) as rx, lab.sender(family, ttl=ttl) as tx:
        tx.send(group, count)
        return rx.wait(count, timeout=10)


MARKER_GROUP = {"ipv4": "233.252.0.250", "ipv6": "ff3e::db8:fa"}
MARKER_PAYLOAD = b"marker"


def delivered_before_marker(w: World, n: int, family: str, group: str, count: int = 5) -> int:
    """Send `count` datagrams to `group`, then a marker to a group that a (*,G) route
    forwards to dst<n>; once the marker has arrived, how many of the first reached dst<n>.

    "None" is then a finding, not an early look: the marker leaves the same sender after
    them through the same router. A forwarding entry for `group` would send them at once;
    without one they wait for an upcall, which the service serves before the marker's
    (its (S,G) is new too: the kernel has no entry for the marker group beforehand)."""
    marker = MARKER_GROUP[family]
    assert marker not in w.lab.mroute_show(family)
    w.ok("route", "add", marker, "iif", "up0", "oif", Lab.downstream(n), "temporary")
    try:
        with (
            w.lab.receiver(n, family, group) as rx,
            w.lab.receiver(n, family, marker) as seen,
            w.lab.sender(family) as tx,
        ):
            tx.send(group, count)
            tx.send(marker, payload=MARKER_PAYLOAD)
            assert wait_until(lambda: has_marker(seen)), f"no marker to {marker} in dst{n}"
            rx.drain()
            return sum(1 for data, _, _ in rx.received if data != MARKER_PAYLOAD)
    finally:
        w.ok("route", "del", marker)


def has_marker(receiver: Receiver) -> bool:
    receiver.drain()
    return any(data == MARKER_PAYLOAD for data, _, _ in receiver.received)


def test_route_add_show_del_with_packets(w: World):
    assert delivered_before_marker(w, 0, "ipv4", G4) == 0
    w.ok("route", "add", G4, "from", S4, "iif", "up0", "oif", "down0")
    assert f"({S4},{G4})" in w.lab.mroute_show().replace(" ", "")
    assert delivered_before_marker(w, 0, "ipv4", G4) == 5  # the witness sees forwarding

    routes = w.json("r", "s")  # prefixes, as in ip
    assert len(routes) == 1
    route = routes[0]
    assert {k: route[k] for k in ("source", "group", "input", "outputs", "state", "family")} == {
        "source": S4, "group": G4, "input": "up0", "outputs": ["down0"],
        "state": "installed", "family": "ipv4",
    }  # fmt: skip
    assert route["packets"] >= 5 and route["bytes"] > 0 and route["wrong_if"] == 0
    assert route["persistent"] is True and route["owner"] is None and route["missing"] == []

    assert len(w.json("route", "show", G4)) == 1  # a group alone matches every source
    assert w.json("route", "show", G4, "from", "*") == []
    table = w.ok("-s", "show").splitlines()
    assert table[0].split() == ["SOURCE", "GROUP", "INPUT", "OUTPUTS", "STATE",
                                "PACKETS", "BYTES", "WRONG-IF"]  # fmt: skip
    assert table[1].split()[:5] == [S4, G4, "up0", "down0", "installed"]

    w.ok("route", "del", G4, "from", S4)
    assert G4 not in w.lab.mroute_show()
    assert delivered_before_marker(w, 0, "ipv4", G4) == 0
    assert w.json("route", "show") == []


def test_legacy_mfc_form_any_source_ipv6(w: World):
    w.ok("mfc", "add", "--group", G6, "--iif", "up0", "--oifs", "down1")
    # The first packets too, queued by the kernel (at most 4) until the upcall is served.
    assert delivered(w.lab, 1, "ipv6", G6, count=3) == 3
    assert delivered(w.lab, 1, "ipv6", G6) == 5
    shown = {(r["source"], r["group"], r["family"], r["state"]) for r in w.json("mfc", "show")}
    source6 = Lab.source_address("ipv6")
    assert shown == {("*", G6, "ipv6", "installed"), (source6, G6, "ipv6", "learned")}
    learned = [r for r in w.json("-6", "route", "show") if r["state"] == "learned"]
    assert learned[0]["packets"] >= 8 and learned[0]["outputs"] == ["down1"]
    assert w.json("-4", "route", "show") == []
    w.ok("mfc", "del", "--group", G6)
    assert w.json("route", "show") == []
    assert delivered_before_marker(w, 1, "ipv6", G6) == 0


def test_vif_add_show_del(w: World):
    added = w.json("vif", "add", "down1", "threshold", "4")
    assert added["interface"] == "down1" and isinstance(added["index"], int)
    vifs = {v["interface"]: v for v in w.json("vif", "show")}
    down1 = vifs["down1"]
    assert down1["index"] == added["index"] and down1["ttl_threshold"] == 4
    assert down1["explicit"] is True and down1["state"] == "installed"
    assert down1["family"] == "ipv4" and down1["table"] == 0
    table = w.ok("vif", "show", "down1").splitlines()
    assert table[1].split()[:5] == [str(added["index"]), "down1", "ipv4", "4", "installed"]
    w.ok("vif", "del", "down1")
    assert all(not v["explicit"] for v in w.json("vif", "show") if v["interface"] == "down1")


def test_batch_from_stdin_all_or_nothing_and_flush(w: World):
    bad = f"route add {G4} iif up0 oif down0\nroute add 192.0.2.77 iif up0 oif down0\n"
    result = w.cli("batch", "-", stdin=bad)
    assert result.returncode == 2
    assert result.stderr.startswith("mfc-dbus: <stdin>:2: group '192.0.2.77' is not a multicast")
    assert w.json("route", "show") == []  # nothing of the batch was applied

    batch = (
        f"# three routes\nroute add {G4} from {S4} iif up0 oif down0\n"
        f"mfc add --group 233.252.0.2 --iif up0 --oifs down0 down1\n"
        f"add {G6} iif up0 oif down1 temporary\n"
    )
    assert w.json("batch", "-", stdin=batch) == {"added": 3}
    routes = {r["group"]: r for r in w.json("route", "show")}
    assert set(routes) == {G4, "233.252.0.2", G6}
    assert routes["233.252.0.2"]["outputs"] == ["down0", "down1"]
    assert routes[G6]["persistent"] is False
    assert delivered(w.lab, 0, "ipv4", G4) == 5
    assert w.json("-4", "route", "flush") == {"removed": 2}
    assert w.ok("route", "flush") == "1 route removed\n"
    assert w.json("route", "show") == []


def test_reload_and_status(w: World):
    w.ok("route", "add", G4, "iif", "up0", "oif", "down0")
    assert w.ok("reload") == ""
    status = w.json("status")
    assert status["version"] == mfc_dbus.__version__
    assert status["routes"] == 1 and "ipv4" in status["families"]
    assert w.ok("st").startswith(f"version:  {mfc_dbus.__version__}\n")
    assert w.json("route", "show")[0]["group"] == G4  # still there after Reload


def test_monitor_prints_changes_as_they_happen(w: World, tmp_path: Path):
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        monitor = subprocess.Popen(
            [*CLI, "-j", "monitor"], env=w.bus.env(), stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert wait_until(lambda: "monitoring" in err.read_text()), err.read_text()
            w.ok("route", "add", G4, "from", S4, "iif", "up0", "oif", "down0")
            w.ok("route", "del", G4, "from", S4)
            assert wait_until(lambda: "RouteRemoved" in out.read_text()), out.read_text()
            monitor.terminate()
            assert monitor.wait(10) == 0
        finally:
            if monitor.poll() is None:
                monitor.kill()
                monitor.wait()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.index("RouteAdded") < names.index("RouteRemoved")
    added = events[names.index("RouteAdded")]
    assert added == {"event": "RouteAdded", "source": S4, "group": G4, "input": "up0",
                     "outputs": ["down0"], "table": 0, "family": "ipv4"}  # fmt: skip
    assert events[names.index("RouteRemoved")] == {
        "event": "RouteRemoved", "source": S4, "group": G4, "input": "up0", "table": 0,
        "family": "ipv4",
    }  # fmt: skip
    assert any(e["event"] == "PropertiesChanged" and "RouteCount" in e["changed"] for e in events)


def test_bad_group_and_unknown_names(w: World):
    result = w.cli("route", "add", "192.0.2.99", "iif", "up0", "oif", "down0")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "mfc-dbus: group '192.0.2.99' is not a multicast address; valid groups are in "
        "224.0.0.0/4 (IPv4) or ff00::/8 (IPv6)\n"
    )
    # An interface that does not exist: accepted as pending (it may appear later), said so.
    result = w.cli("route", "add", G4, "iif", "up0", "oif", "nosuch0")
    assert result.returncode == 0
    assert result.stderr == (
        f"mfc-dbus: warning: route * {G4} is pending: nosuch0 does not exist (yet); "
        "it is installed when the interface appears\n"
    )
    assert w.json("route", "show")[0]["missing"] == ["nosuch0"]
    # Removing what does not exist: the service's NotFound, one line, status 1.
    result = w.cli("vif", "del", "nosuch1")
    assert result.returncode == 1
    assert result.stderr.startswith("mfc-dbus: interface 'nosuch1' has no ipv4 VIF")
    assert "\n" not in result.stderr.rstrip("\n") and "Traceback" not in result.stderr
    result = w.cli("route", "del", "233.252.0.99")
    assert result.returncode == 1 and result.stderr.startswith("mfc-dbus: no route")


def test_service_side_invalid_argument_reaches_programs_typed(w: World):
    async def call() -> None:
        async with await MfcClient.connect(w.bus.address) as client:
            with pytest.raises(InvalidArgument, match="192.0.2.99"):
                await client.add_route("", "192.0.2.99", "up0", ["down0"])

    asyncio.run(call())


def test_not_authorized_then_allowed_by_polkit(w: World):
    env = client_env(w.bus)
    argv = client_argv()
    with ThrowawayUser() as user:
        add = [*argv, "route", "add", G4, "iif", "up0", "oif", "down0"]
        result = user.run(add, env=env, cwd="/", stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout) == (4, ""), result.stderr
        assert result.stderr == (
            "mfc-dbus: not authorized to manage routes (polkit action "
            "org.mfc.Forwarding1.manage-routes); ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules\n"
        )
        result = user.run([*argv, "vif", "add", "down1"], env=env, cwd="/")
        assert result.returncode == 4 and "manage-interfaces" in result.stderr
        # Reads need no authorization; and once polkit says yes, the same user may add.
        assert user.run([*argv, "-j", "r", "s"], env=env, cwd="/").stdout == "[]\n"
        w.polkit.set_allowed([ACTION_MANAGE_ROUTES])
        result = user.run(add, env=env, cwd="/", stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stderr) == (0, "")
    assert w.json("route", "show")[0]["group"] == G4


def test_service_absent():
    if os.geteuid() != 0:
        pytest.skip("needs root: a private system bus")
    with PrivateBus() as empty:
        result = subprocess.run(
            [*CLI, "route", "show"], env=empty.env(), capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=30,
        )  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "mfc-dbus: the mfc-dbus service (org.mfc.Forwarding1) is not running and the bus "
        "cannot start it: is mfc-dbus installed? (systemctl status mfc-dbus)\n"
    )


class Stream:
    """A sender in src sending `rate` datagrams per second until stopped."""

    def __init__(self, lab: Lab, ttl: int, group: str = G4, rate: float = 50) -> None:
        self.sender = lab.sender("ipv4", ttl=ttl)
        self.group, self.period = group, 1 / rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            self.sender.send(self.group)

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sender.close()


def test_diagnose_names_ttl_1_then_sees_forwarding(w: World):
    w.ok("route", "add", G4, "from", S4, "iif", "up0", "oif", "down0")
    with Stream(w.lab, ttl=1):
        result = w.cli("-j", "diagnose", G4, S4, "interval", "1")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["ttl"]
    assert report["routes"][0]["packets_delta"] > 0
    with Stream(w.lab, ttl=1):
        text = w.cli("diagnose", G4, "interval", "1").stdout
    assert "TTL is probably 1" in text and text.startswith("problem:")

    with Stream(w.lab, ttl=8):
        result = w.cli("-j", "d", G4, "interval", "1")
    assert result.returncode == 0, result.stdout
    assert [f["code"] for f in json.loads(result.stdout)["findings"]] == ["forwarding"]


def test_diagnose_no_route_pending_and_silence(w: World):
    result = w.cli("diagnose", "233.252.0.42", "interval", "0")
    assert result.returncode == 1
    assert result.stdout.startswith("problem: no route matches (*, 233.252.0.42)")
    assert w.cli("route", "add", "233.252.0.43", "iif", "up0", "oif", "nosuch0").returncode == 0
    report = json.loads(w.cli("-j", "diagnose", "233.252.0.43", "interval", "0").stdout)
    assert [f["code"] for f in report["findings"]] == ["pending"]
    assert "nosuch0 does not exist" in report["findings"][0]["message"]
    w.ok("route", "add", G4, "from", S4, "iif", "up0", "oif", "down0")
    report = json.loads(w.cli("-j", "diagnose", G4, "interval", "0.5").stdout)
    assert [f["code"] for f in report["findings"]] == ["no-packets"]
    assert "rp_filter" in report["findings"][0]["message"]


API_DOC = Path(__file__).resolve().parents[2] / "docs" / "dbus-api.md"
DOC_INTERFACES = {"eth0": "up0", "eth1": "down0", "eth2": "down1"}


def doc_section(title: str) -> str:
    text = API_DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.index("\n#", start + 1)
    return text[start:end]


def doc_busctl_calls() -> list[list[str]]:
    """Every call of docs/dbus-api.md's busctl table, in its order."""
    prefix = ["busctl", "--system", "call", BUS_NAME, OBJECT_PATH, BUS_NAME]
    rows = re.findall(
        r"^\| [A-Za-z, ]+ \| `([A-Z]\w+ .*?|Reload)`", doc_section("With busctl"), re.M
    )
    return [prefix + shlex.split(row) for row in rows]


def doc_gdbus_calls() -> list[list[str]]:
    """docs/dbus-api.md's gdbus block, `$F` expanded; `gdbus monitor` left out (it never ends)."""
    section = doc_section("With gdbus")
    block = section[section.index("```sh\n") + 6 : section.rindex("```")].replace("\\\n", "")
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    common = shlex.split(lines[0][0].removeprefix("F="))
    calls = []
    for words in lines[1:]:
        argv = [part for word in words for part in (common if word == "$F" else [word])]
        if argv[:2] != ["gdbus", "monitor"]:
            calls.append(argv)
    return calls


def test_the_documented_busctl_and_gdbus_examples_work(w: World):
    busctl, gdbus = doc_busctl_calls(), doc_gdbus_calls()
    assert len(busctl) >= 10 and len(gdbus) >= 5, (busctl, gdbus)  # found them all
    for argv in busctl + gdbus:
        argv = [DOC_INTERFACES.get(word, word) for word in argv]
        result = subprocess.run(argv, env=w.bus.env(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (argv, result.stderr)


def test_route_flush_learned_drops_only_the_learned_flows(w: World):
    w.ok("route", "add", G4, "iif", "up0", "oif", "down0")  # (*,G)
    w.ok("route", "add", "233.252.0.77", "from", S4, "iif", "up0", "oif", "down1")
    assert delivered(w.lab, 0, "ipv4", G4, count=3) == 3  # learns (S4, G4)

    def states() -> set[tuple[str, str, str]]:
        return {(r["source"], r["group"], r["state"]) for r in w.json("route", "show")}

    assert (S4, G4, "learned") in states()
    assert w.ok("route", "flush", "learned").strip() == "1 learned flow removed"
    assert states() == {("*", G4, "installed"), (S4, "233.252.0.77", "installed")}
    assert f"({S4},{G4})" not in w.lab.mroute_show().replace(" ", "")
    # The next packets are learned again from the template and forwarded.
    assert delivered(w.lab, 0, "ipv4", G4, count=3) == 3
    assert (S4, G4, "learned") in states()
