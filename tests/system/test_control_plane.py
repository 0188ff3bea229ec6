"""Forwarding never stops when the control plane does (issue 13), under a real systemd on
Debian 12 and 13, with the installed .deb.

Steady flows of 250 packets/s each run through an (S,G) route, a (*,G) route and an
IPv6 route (IPV6_MULTICAST_HOPS) while, one at a time: `systemctl restart dbus`,
`systemctl restart mfc-dbus`, `kill -9` of mfc-dbusd's main PID, `systemctl reload
mfc-dbus`, and an upgrade of the installed .deb to a newer version. New sources of the
(*,G) group start during each event. After each: 0 packets lost, the first packet of
every new source delivered, and the routes (persistent and temporary) identical before
and after (ListRoutes without counters); the longest gap is recorded. Then: only
`systemctl stop` flushes; a kernel table changed behind the service's back while it was
down is reconciled; a restart holding 100,000 routes comes back (its time recorded) with the routes
in the kernel throughout.

One booted container per suite (conftest's `debian`) serves the module; the module's
fixture leaves it as it found it (no route, the original package) for test_debian.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import deb_version
from .container import wait_for
from .flows import PAYLOAD_DIR, SOURCE_V4, SOURCE_V6, ensure_topology
from .system import BUS_NAME, OBJECT, UNIT, DebianSystem
from .traffic import EventResult, Flow, Traffic

pytestmark = pytest.mark.system

MRTOOL = f"{PAYLOAD_DIR}/mrtool.py"
ADDROUTES = f"{PAYLOAD_DIR}/addroutes.py"
G_SG, G_STAR, G_V6 = "233.252.0.131", "233.252.0.132", "ff3e::db8:13:1"
G_TMP_V4, G_TMP_V6, G_PERSIST_V6 = "233.252.0.133", "ff3e::db8:13:2", "ff3e::db8:13:3"
G_HOTPLUG, G_FOREIGN = "233.252.0.136", "233.252.0.137"
G_JOINED = "233.252.0.138"  # a group join that restarts must not leave
FLOWS = [Flow("(S,G)", G_SG, SOURCE_V4), Flow("(*,G)", G_STAR, SOURCE_V4),
         Flow("IPv6", G_V6, SOURCE_V6)]  # fmt: skip
NEW_PER_EVENT = 8  # the kernel keeps at most 10 unresolved (S,G) per table
# Issue 13's target is READY within 1 s at 100,000 routes; the time is a benchmark
# figure (bench/restart.py) and is recorded here. This test holds the service to what
# must never fail: the kernel's table stays whole, and the service comes back adopted.
RESTART_WAIT_100K = 60.0  # s; beyond it the restart is stopped and the test fails
NAME_BACK_MAX = 2.0  # s after the bus returned, issue 13
COUNTERS = ("packets", "bytes", "wrong_if")


@dataclass
class Plane:
    debian: DebianSystem
    traffic: Traffic
    original_version: str
    new_sources: list[str]
    used_sources: set[str] = field(default_factory=set)

    def take_new_sources(self, count: int = NEW_PER_EVENT) -> list[str]:
        taken, self.new_sources = self.new_sources[:count], self.new_sources[count:]
        self.used_sources.update(taken)
        return taken

    def routes(self) -> list[tuple]:
        """ListRoutes as `mfc-dbus -j route show`, without counters, sorted; learned flows
        of the sources that come and go during events are left out (they are new)."""
        done = self.debian.mfc("-j", "route", "show")
        assert done.returncode == 0, done.stderr
        rows = []
        for route in json.loads(done.stdout):
            if route.get("state") == "learned" and route.get("source") in self.used_sources:
                continue
            rows.append(tuple(sorted(
                (k, tuple(v) if isinstance(v, list) else v)
                for k, v in route.items() if k not in COUNTERS
            )))  # fmt: skip
        return sorted(rows, key=repr)


def _routes_added(debian: DebianSystem) -> None:
    for words in (
        (G_SG, "from", SOURCE_V4, "iif", "up0", "oif", "down0"),
        (G_STAR, "iif", "up0", "oif", "down0"),
        (G_PERSIST_V6, "iif", "up0", "oif", "down0"),
        # Temporary (persistent=false): runtime state that must survive too.
        (G_V6, "from", SOURCE_V6, "iif", "up0", "oif", "down0", "temporary"),
        (G_TMP_V4, "from", SOURCE_V4, "iif", "up0", "oif", "down0", "temporary"),
        (G_TMP_V6, "iif", "up0", "oif", "down0", "temporary"),
    ):
        added = debian.route_add(*words)
        assert added.returncode == 0, f"route add {' '.join(words)}: {added.stderr}"
    debian.wait_mroute(f"({SOURCE_V4},{G_SG})")
    debian.wait_mroute(f"({SOURCE_V6},{G_V6})", "ipv6")


def _installed_version(debian: DebianSystem) -> str:
    done = debian.run("dpkg-query", "-W", "-f", "${Version}", "mfc-dbus", check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def plane(debian: DebianSystem, deb: Path) -> Iterator[Plane]:
    debian.require_running()
    ensure_topology(debian.c)
    # New (*,G) sources: addresses on the sender's leg, all at once.
    sources = [f"192.0.2.{n}" for n in range(100, 200)]
    batch = "".join(f"address replace {s}/24 dev eth0\n" for s in sources)
    debian.run("ip", "-batch", "-", netns="src", input=batch, check=True)
    _routes_added(debian)
    try:
        with Traffic(debian.c, FLOWS) as traffic:
            yield Plane(debian, traffic, _installed_version(debian), sources)
    finally:
        # As found: no route (test_debian.py's activation test expects an empty list)
        # and the package version the run installed.
        if debian.active_state() == "active" or debian.installed:
            debian.mfc("route", "flush", timeout=120)
        if _installed_version(debian) != deb_version(deb):
            debian.run("apt-get", "install", "-y", "--allow-downgrades",
                       f"{PAYLOAD_DIR}/{deb.name}", env={"DEBIAN_FRONTEND": "noninteractive"},
                       timeout=300)  # fmt: skip
            debian.mfc("route", "flush", timeout=120)


# == the events =========================================================================


def _wait_serving(debian: DebianSystem, timeout: float = 30.0) -> tuple[int, float]:
    """Until the unit is active, its main PID owns the bus name and a call works;
    returns (main PID, seconds waited)."""
    started = time.monotonic()

    def serving() -> int | None:
        if debian.active_state() != "active":
            return None
        pid = debian.main_pid()
        if pid <= 0 or debian.name_owner_pid() != pid:
            return None
        return pid if debian.busctl("ListVifs", "a{sv}", "0", timeout=5).returncode == 0 else None

    try:
        pid = wait_for(serving, timeout, f"{UNIT} to serve again on {debian.suite}")
    except Exception as error:
        raise AssertionError(f"{error}\n{debian.status()}\n{debian.journal()[-3000:]}") from None
    return pid, time.monotonic() - started


def _restart_dbus(plane: Plane, run) -> dict[str, object]:
    debian = plane.debian
    pid = debian.main_pid()
    run.cue_every(0.02)
    debian.systemctl("restart", "dbus.service")
    back_pid, waited = _wait_serving(debian)
    assert back_pid == pid, "the service was restarted: losing the bus must not end it"
    return {"name owned again after the bus returned, s": waited}


def _restart_service(plane: Plane, run) -> dict[str, object]:
    debian = plane.debian
    pid = debian.main_pid()
    run.cue_every(0.04)
    started = time.monotonic()
    debian.systemctl("restart", UNIT)
    ready = time.monotonic() - started
    new_pid, _ = _wait_serving(debian)
    assert new_pid != pid
    return {"systemctl restart returned (READY), s": ready}


def _kill_9(plane: Plane, run) -> dict[str, object]:
    debian = plane.debian
    pid = debian.main_pid()
    run.cue_every(0.3)
    started = time.monotonic()
    debian.run("kill", "-9", str(pid), check=True)
    wait_for(lambda: debian.main_pid() not in (0, pid) and debian.active_state() == "active",
             30, "systemd to restart mfc-dbusd after kill -9")  # fmt: skip
    ready = time.monotonic() - started
    _wait_serving(debian)
    return {"restarted and READY after kill -9, s": ready}


def _reload(plane: Plane, run) -> dict[str, object]:
    debian = plane.debian
    pid = debian.main_pid()
    run.cue_every(0.05)
    started = time.monotonic()
    debian.systemctl("reload", UNIT)
    took = time.monotonic() - started
    assert debian.main_pid() == pid  # a reload, not a restart
    _wait_serving(debian)
    return {"systemctl reload returned, s": took}


def _upgrade(plane: Plane, run, newer: Path) -> dict[str, object]:
    debian = plane.debian
    pid = debian.main_pid()
    debian.c.write(f"{PAYLOAD_DIR}/{newer.name}", newer.read_bytes())
    run.cue_every(0.12)
    started = time.monotonic()
    done = debian.run("apt-get", "install", "-y", f"{PAYLOAD_DIR}/{newer.name}",
                      env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=300)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert _installed_version(debian) == deb_version(newer)
    new_pid, _ = _wait_serving(debian)
    assert new_pid != pid, "the upgrade did not restart the service (old code still runs)"
    version = debian.run("busctl", "get-property", BUS_NAME, OBJECT, BUS_NAME, "Version")
    assert version.stdout.split() == ["s", f'"{deb_version(newer)}"'], version.stdout
    return {"apt-get install of the newer .deb, s": took}


EVENTS: dict[str, Callable] = {
    "restart dbus": _restart_dbus,
    "restart mfc-dbus": _restart_service,
    "kill -9": _kill_9,
    "reload": _reload,
    "upgrade": _upgrade,
}


def _record(debian: DebianSystem, event: str, result: EventResult, extra: dict) -> None:
    debian.record(f"{event}: packets lost", result.lost)
    debian.record(f"{event}: longest gap, ms", result.longest_gap * 1000)
    debian.record(f"{event}: flows", result.per_flow())
    debian.record(f"{event}: new sources' first packet", result.first_packets())
    latencies = [s.first_latency for s in result.new_sources if s.first_latency is not None]
    if latencies:
        debian.record(f"{event}: new sources' first packet, max ms", max(latencies) * 1000)
    for key, value in extra.items():
        debian.record(f"{event}: {key}", value)


@pytest.mark.parametrize("event", list(EVENTS))
def test_no_packet_lost_and_routes_kept_across(plane: Plane, event: str, request) -> None:
    debian = plane.debian
    _wait_serving(debian)
    _routes_added(debian)  # the same routes again (a no-op) if an earlier event lost some
    act = EVENTS[event]
    if event == "upgrade":
        newer = request.getfixturevalue("newer_deb")
        act = lambda plane, run: _upgrade(plane, run, newer)  # noqa: E731
    tag = f"{event.replace(' ', '').replace('-', '')}{uuid.uuid4().hex[:4]}"
    new_sources = plane.take_new_sources()
    cursor = debian.journal_cursor()

    with plane.traffic.event(tag, G_STAR, new_sources) as run:
        before = plane.routes()
        extra = act(plane, run)
    result = run.result
    assert result is not None
    after = plane.routes()
    _record(debian, event, result, extra)

    lost = {r.flow.name: r.lost for r in result.flows}
    assert all(r.sent >= 250 for r in result.flows), result.per_flow()
    assert lost == {flow.name: 0 for flow in FLOWS}, f"{event}: {result.per_flow()}"
    assert result.new_sources, f"{event}: no new source started during the event"
    missing_first = [s.source for s in result.new_sources if not s.first_delivered]
    assert not missing_first, (
        f"{event}: first packet of new sources {missing_first} not delivered "
        f"({result.first_packets()})"
    )
    assert after == before, f"{event}: routes changed:\nbefore {before}\nafter  {after}"
    assert "Traceback" not in debian.journal(after=cursor)
    if event == "restart dbus":
        waited = extra["name owned again after the bus returned, s"]
        assert waited <= NAME_BACK_MAX, f"name owned again {waited:.2f} s after the bus returned"


# == only an explicit stop flushes ======================================================


def test_stop_flushes_and_start_restores_the_persistent_routes(plane: Plane) -> None:
    debian = plane.debian
    _wait_serving(debian)
    assert f"({SOURCE_V4},{G_SG})" in debian.mroute()

    debian.systemctl("stop", UNIT)

    assert debian.active_state() == "inactive"
    assert debian.mroute("ipv4").strip() == ""
    assert debian.mroute("ipv6").strip() == ""

    debian.systemctl("start", UNIT)
    _wait_serving(debian)
    debian.wait_mroute(f"({SOURCE_V4},{G_SG})")
    shown = {(r[0], r[1]) for r in _route_keys(debian)}
    assert {("192.0.2.1", G_SG), ("*", G_STAR), ("*", G_PERSIST_V6)} <= shown, shown
    # Temporary routes are what a stop ends; put them back for what follows.
    _routes_added(debian)


def _route_keys(debian: DebianSystem) -> list[tuple[str, str, str]]:
    done = debian.mfc("-j", "route", "show")
    assert done.returncode == 0, done.stderr
    return [(r["source"], r["group"], r["state"]) for r in json.loads(done.stdout)]


# == bad input to the adoption ==========================================================


def test_table_changed_while_down_is_reconciled(plane: Plane) -> None:
    """SIGKILL; before systemd restarts the service (RestartSec=), delete an interface a
    route uses and add an (S,G) with another tool: the restarted service adopts the
    table, marks the route pending, removes the stranger, logs both, and does not crash;
    the interface coming back brings the route back."""
    debian = plane.debian
    _wait_serving(debian)
    suffix = uuid.uuid4().hex[:4]
    extra, peer = f"s13x{suffix}", f"s13y{suffix}"
    debian.run("ip", "link", "add", extra, "type", "veth", "peer", "name", peer, check=True)
    try:
        debian.run("ip", "link", "set", extra, "up", check=True)
        added = debian.route_add(G_HOTPLUG, "from", SOURCE_V4, "iif", "up0", "oif", "down0",
                                 extra)  # fmt: skip
        assert added.returncode == 0, added.stderr
        shown = debian.wait_mroute(f"({SOURCE_V4},{G_HOTPLUG})")
        assert extra in shown, shown
        restarts = int(debian.unit("NRestarts"))
        pid = debian.main_pid()
        cursor = debian.journal_cursor()

        debian.run("systemctl", "kill", "-s", "SIGKILL", UNIT, check=True)
        wait_for(lambda: debian.main_pid() == 0, 5, "the killed service's main PID to go")
        kept = debian.mroute()
        assert (
            f"({SOURCE_V4},{G_SG})" in kept
        ), f"the kernel's table was flushed when the service was killed:\n{kept}"
        debian.run("ip", "link", "del", extra, check=True)
        debian.run("python3", MRTOOL, "add-mfc", "192.0.2.99", G_FOREIGN, "up0", "down0",
                   check=True)  # fmt: skip
        assert (
            f"(192.0.2.99,{G_FOREIGN})" in debian.mroute()
        ), "the foreign entry did not reach the kernel (was the table flushed?)"
        assert debian.main_pid() == 0, "restarted before the table was changed: too slow"

        new_pid, _ = _wait_serving(debian)
        assert new_pid != pid
        assert int(debian.unit("NRestarts")) == restarts + 1, "it crashed again"
        routes = {(s, g): state for s, g, state in _route_keys(debian)}
        assert routes.get((SOURCE_V4, G_HOTPLUG)) == "pending", routes
        wait_for(lambda: G_FOREIGN not in debian.mroute(), 10,
                 "the foreign (S,G) to be removed from the kernel")  # fmt: skip
        journal = debian.journal(after=cursor)
        assert extra in journal, f"the missing interface is not logged:\n{journal[-3000:]}"
        assert G_FOREIGN in journal, f"the foreign route is not logged:\n{journal[-3000:]}"
        assert "Traceback" not in journal, journal[-3000:]

        debian.run("ip", "link", "add", extra, "type", "veth", "peer", "name", peer,
                   check=True)  # fmt: skip
        debian.run("ip", "link", "set", extra, "up", check=True)
        wait_for(
            lambda: extra
            in debian.mroute().split(f"({SOURCE_V4},{G_HOTPLUG})", 1)[-1].split("\n", 1)[0],
            15,
            f"the route through {extra} back in the kernel",
        )
        routes = {(s, g): state for s, g, state in _route_keys(debian)}
        assert routes.get((SOURCE_V4, G_HOTPLUG)) == "installed", routes
        assert debian.main_pid() == new_pid
    finally:
        debian.mfc("route", "del", G_HOTPLUG, "from", SOURCE_V4)
        debian.run("ip", "link", "del", extra)


# == group joins =========================================================================


def test_restarts_keep_group_memberships(plane: Plane) -> None:
    """The join sockets live in systemd's fd store: through `systemctl restart` and
    `kill -9` the kernel never stops holding the group (/proc/net/igmp, sampled without
    pause), so no IGMP leave goes out; after each the join is listed as joined."""
    debian = plane.debian
    _wait_serving(debian)
    joined = debian.mfc("group", "join", "up0", G_JOINED)
    assert joined.returncode == 0, joined.stderr
    try:
        sampler = debian.c.popen(["python3", MRTOOL, "sample-igmp", "up0", G_JOINED],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)  # fmt: skip
        samples: list[tuple[float, int]] = []
        try:
            samples.append(_sample(sampler.stdout.readline()))
            assert samples[0][1] == 1, "the join is not in /proc/net/igmp"
            cursor = debian.journal_cursor()
            for end in (lambda pid: debian.systemctl("restart", UNIT),
                        lambda pid: debian.run("kill", "-9", str(pid), check=True)):  # fmt: skip
                pid = debian.main_pid()
                end(pid)
                wait_for(lambda old=pid: debian.main_pid() not in (0, old), 30, "a new main PID")
                _wait_serving(debian)
                shown = debian.mfc("-j", "group", "show")
                assert shown.returncode == 0, shown.stderr
                [row] = [r for r in json.loads(shown.stdout) if r["group"] == G_JOINED]
                assert row["state"] == "joined", row
        finally:
            sampler.stdin.close()
            samples.extend(_sample(line) for line in sampler.stdout)
            sampler.wait(timeout=30)
        debian.record("joins: /proc/net/igmp samples through two restarts", len(samples))
        absent = [when for when, present in samples if not present]
        assert not absent, f"the group was not held at {len(absent)} of {len(samples)} samples"
        assert len(samples) > 100, "too few samples to tell"
        journal = debian.journal(after=cursor)
        assert "Traceback" not in journal and "closing the join socket" not in journal, journal
    finally:
        debian.mfc("group", "leave", "up0", G_JOINED)


# == 100,000 routes =====================================================================


def test_restart_holding_100k_routes_keeps_the_table(plane: Plane) -> None:
    debian = plane.debian
    _wait_serving(debian)
    total, batch = 100_000, 10_000
    started = time.monotonic()
    added = debian.run("python3", ADDROUTES, str(total), str(batch), SOURCE_V4, "239.13.0.0",
                       "up0", "down0", timeout=600)  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    debian.record("100k: AddRoutes in batches of 10k, s", time.monotonic() - started)
    count = _kernel_count(debian)
    assert count >= total, count
    cursor = debian.journal_cursor()

    sampler = debian.c.popen(["python3", MRTOOL, "sample"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    samples: list[tuple[float, int]] = []
    try:
        first_line = sampler.stdout.readline()
        samples.append(_sample(first_line))
        pid = debian.main_pid()
        started = time.monotonic()
        restart = debian.c.popen(["systemctl", "restart", UNIT], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)  # fmt: skip
        try:
            status = restart.wait(timeout=RESTART_WAIT_100K)
        except subprocess.TimeoutExpired:
            # Not ready long after the target: say where it is, then stop it (the only
            # way out that does not wait minutes) and start from an empty state.
            where = debian.unit("StatusText")
            journal = debian.journal(after=cursor)[-2500:]
            debian.record("100k: systemctl restart returned (READY), s",
                          f"> {RESTART_WAIT_100K:g} (StatusText: {where})")  # fmt: skip
            debian.run("systemctl", "stop", UNIT, timeout=120)
            restart.wait(timeout=30)
            debian.run("sh", "-c", "rm -rf /var/lib/mfc-dbus/* /run/mfc-dbus/*")
            raise AssertionError(
                f"not ready {RESTART_WAIT_100K:g} s after `systemctl restart` with {total} "
                f"routes (StatusText {where!r}):\n{journal}"
            ) from None
        ready = time.monotonic() - started
        assert status == 0, restart.stdout.read()
        route_count = debian.run("busctl", "get-property", BUS_NAME, OBJECT, BUS_NAME,
                                 "RouteCount").stdout.split()  # fmt: skip
    finally:
        sampler.stdin.close()
        for line in sampler.stdout:
            samples.append(_sample(line))
        sampler.wait(timeout=30)
    debian.record("100k: systemctl restart returned (READY), s", ready)
    lowest = min(count for _, count in samples)
    debian.record("100k: fewest kernel entries during the restart", lowest)
    debian.record("100k: kernel table samples during the restart", len(samples))
    assert debian.main_pid() != pid
    assert (
        route_count[:1] == ["u"] and int(route_count[1]) >= total
    ), f"READY before the table was adopted: RouteCount {route_count}"
    assert lowest >= total, f"the kernel's table fell to {lowest} entries during the restart"

    started = time.monotonic()
    flushed = debian.mfc("route", "flush", timeout=300)
    assert flushed.returncode == 0, flushed.stderr
    debian.record("100k: flush, s", time.monotonic() - started)


def _kernel_count(debian: DebianSystem) -> int:
    done = debian.run("wc", "-l", "/proc/net/ip_mr_cache", check=True)
    return int(done.stdout.split()[0]) - 1


def _sample(line: str) -> tuple[float, int]:
    when, count = line.split()
    return float(when), int(count)
