"""`mfc-dbus config import|export|check` against the real service in the lab."""

from __future__ import annotations

import json

import pytest
import test_cli_lab
from test_cli_lab import World, delivered

from mfc_lab import Lab

pytestmark = pytest.mark.root

world = test_cli_lab.world  # the lab, the private bus and the service of those tests
w = test_cli_lab.w

G4 = Lab.group("ipv4")
G6 = Lab.group("ipv6")
S4 = Lab.source_address("ipv4")

CONFIGURATION = f"""\
# what an smcroute user might have
phyint down0 enable ttl-threshold 3
mroute from up0 source {S4} group {G4} to down0 down1
mroute from up0 group ff3e::db8:0/112 to down1   # any source, a group prefix
mroute from up0 group 233.252.0.0/24 table 0 to down0
"""


def routes(w: World) -> list[tuple]:
    return sorted(
        (r["source"], r["group"], r["input"], tuple(r["outputs"]), r["table"], r["state"])
        for r in w.json("route", "show")
    )


def test_import_applies_routes_and_vif_settings_and_packets_flow(w: World, tmp_path):
    path = tmp_path / "routes.conf"
    path.write_text(CONFIGURATION)
    result = w.cli("config", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 routes, 1 interface settings and 0 group joins applied" in result.stdout
    assert routes(w) == [
        ("*", "233.252.0.0/24", "up0", ("down0",), 0, "installed"),
        ("*", "ff3e::db8:0/112", "up0", ("down1",), 0, "installed"),
        (S4, G4, "up0", ("down0", "down1"), 0, "installed"),
    ]
    (down0,) = [v for v in w.json("vif", "show") if v["interface"] == "down0" and v["explicit"]]
    assert down0["ttl_threshold"] == 3
    assert delivered(w.lab, 1, "ipv4", G4) == 5
    # A new (S,G) of the (*,G): the kernel queues at most 4 packets until it is learned.
    assert delivered(w.lab, 1, "ipv6", "ff3e::db8:7", count=3) == 3
    assert delivered(w.lab, 1, "ipv6", "ff3e::db8:7") == 5


def test_export_then_import_gives_the_same_routes(w: World, tmp_path):
    path = tmp_path / "routes.conf"
    path.write_text(CONFIGURATION)
    w.ok("config", "import", str(path))
    w.ok("route", "add", "233.252.1.1", "iif", "up0", "oif", "down1", "table", "7")
    w.ok("group", "join", "up0", "232.1.1.1", "source", S4, "table", "7")
    before = routes(w)
    exported = w.ok("config", "export")
    assert "phyint down0 enable ttl-threshold 3\n" in exported
    assert "mroute from up0 group 233.252.1.1 table 7 to down1\n" in exported
    assert f"mgroup from up0 source {S4} group 232.1.1.1 table 7\n" in exported
    w.ok("route", "flush")
    w.ok("group", "leave", "up0", "232.1.1.1", "source", S4, "table", "7")
    assert w.json("group", "show") == []
    for vif in w.json("vif", "show"):
        if vif["explicit"]:
            w.ok("vif", "del", vif["interface"], "family", vif["family"])
    assert routes(w) == []
    again = tmp_path / "exported.conf"
    again.write_text(exported)
    w.ok("config", "import", str(again))
    assert routes(w) == before
    joins = [
        (j["interface"], j["source"], j["group"], j["table"], j["state"])
        for j in w.json("group", "show")
    ]
    assert joins == [("up0", S4, "232.1.1.1", 7, "joined")]


def test_a_bad_file_applies_nothing_and_names_every_problem(w: World, tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(
        f"mroute from up0 source {S4} group {G4} to down0\n"
        "mroute from up0 group 10.0.0.1 to down0\n"
        "mgroup from up0 group 233.252.0.9\n"
    )
    result = w.cli("config", "import", str(path))
    assert result.returncode == 78
    assert f"{path}:2:23: group '10.0.0.1' is not a multicast address" in result.stderr
    checked = w.cli("config", "check", str(path))
    assert checked.returncode == 78 and f"{path}:2:23:" in checked.stderr
    assert routes(w) == []  # not even the good first line


def test_check_needs_no_service(w: World, tmp_path):
    path = tmp_path / "good.conf"
    path.write_text(CONFIGURATION)
    env = {**w.bus.env(), "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}
    result = w.cli("-j", "config", "check", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "file": str(path),
        "routes": 3,
        "joins": 0,
        "interfaces": 1,
    }
