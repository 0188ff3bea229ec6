"""Multicast router discovery's timers and its following of VIFs, with an injected
clock and stand-in sockets (no root, no sleeps): the engine calls are real."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from fake_kernel import FakeKernel

from mfc_dbus.engine import Engine
from mfc_dbus.engine.mrdisc import (
    ADVERT_JITTER,
    MAX_ADVERT_INTERVAL,
    MAX_INITIAL_ADVERT_INTERVAL,
    MIN_SOLICITED_GAP,
    Mrdisc,
)
from mfc_dbus.engine.state import StateFile
from mfc_dbus.kernel.mrdisc import Advertisement
from mfc_dbus.model import Family, VifConfig, VifStatus

V4, V6 = Family.IPV4, Family.IPV6


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StandInSocket:
    """Records what would have gone on the wire, with the clock's time."""

    def __init__(self, family: Family, interface: str, clock: Clock, kernel=None) -> None:
        self.family, self.interface, self.clock, self.kernel = family, interface, clock, kernel
        self.ifindex = kernel.interfaces[interface] if kernel is not None else 7
        self.sent: list[tuple[float, str]] = []
        self.closed = False
        self._r, self._w = socket.socketpair()

    def fileno(self) -> int:
        return self._r.fileno()

    def advertise(self, advertisement: Advertisement) -> None:
        assert advertisement.interval == MAX_ADVERT_INTERVAL
        self.sent.append((self.clock.now, "advertisement"))

    def terminate(self) -> None:
        self.sent.append((self.clock.now, "termination"))

    def read_solicitations(self) -> int:
        return 0

    def is_current(self) -> bool:
        return self.kernel is None or self.kernel.interfaces.get(self.interface) == self.ifindex

    def close(self) -> None:
        self.closed = True
        self._r.close()
        self._w.close()


class Opener:
    def __init__(self, clock: Clock, kernel=None) -> None:
        self.clock, self.kernel = clock, kernel
        self.opened: list[StandInSocket] = []

    def __call__(self, family: Family, interface: str) -> StandInSocket:
        if self.kernel is not None and interface not in self.kernel.interfaces:
            raise OSError(19, f"no interface {interface}")
        sock = StandInSocket(family, interface, self.clock, self.kernel)
        self.opened.append(sock)
        return sock

    def last(self, interface: str, family: Family = V4) -> StandInSocket:
        return [s for s in self.opened if (s.family, s.interface) == (family, interface)][-1]


def vif(name: str, mrdisc: bool = True, index: int | None = 0, table: int = 0) -> VifStatus:
    return VifStatus(name, V4, table, index, 1, True, mrdisc=mrdisc)


def run_until(mrdisc: Mrdisc, clock: Clock, end: float, step: float = 0.01) -> None:
    while clock.now < end:
        clock.now = round(clock.now + step, 6)
        mrdisc.tick()


@pytest.fixture
def manager():
    clock = Clock()
    opener = Opener(clock)
    mrdisc = Mrdisc(clock, opener, jitter=lambda low, high: high)  # always +jitter
    return mrdisc, clock, opener


def times(sock: StandInSocket, start: float) -> list[float]:
    return [round(at - start, 2) for at, what in sock.sent if what == "advertisement"]


def test_three_initial_advertisements_then_one_per_interval_with_jitter(manager):
    mrdisc, clock, opener = manager
    start = clock.now
    mrdisc.vif_added(vif("eth0"))
    run_until(mrdisc, clock, start + 70)
    period = MAX_ADVERT_INTERVAL + ADVERT_JITTER
    first_periodic = 2 * MAX_INITIAL_ADVERT_INTERVAL + period
    assert times(opener.last("eth0"), start) == [
        0.0,
        MAX_INITIAL_ADVERT_INTERVAL,
        2 * MAX_INITIAL_ADVERT_INTERVAL,
        first_periodic,
        round(first_periodic + period, 2),
        round(first_periodic + 2 * period, 2),
    ]


def test_jitter_stays_within_the_rfc_bound():
    clock = Clock()
    opener = Opener(clock)
    picked: list[tuple[float, float]] = []

    def low_end(low: float, high: float) -> float:
        picked.append((low, high))
        return low

    mrdisc = Mrdisc(clock, opener, jitter=low_end)
    mrdisc.vif_added(vif("eth0"))
    run_until(mrdisc, clock, clock.now + 30)
    assert set(picked) == {(-ADVERT_JITTER, ADVERT_JITTER)}
    assert times(opener.last("eth0"), 1000.0)[3] == 4 + MAX_ADVERT_INTERVAL - ADVERT_JITTER


def test_a_solicitation_is_answered_at_once_but_rate_limited(manager):
    mrdisc, clock, opener = manager
    start = clock.now
    mrdisc.vif_added(vif("eth0"))
    run_until(mrdisc, clock, start + 10)  # the initial three are out
    sock = opener.last("eth0")
    assert len(sock.sent) == 3
    mrdisc.solicited(V4, "eth0")
    assert sock.sent[-1] == (start + 10, "advertisement")  # answered without waiting
    clock.now += 0.3
    mrdisc.solicited(V4, "eth0")  # within MIN_SOLICITED_GAP: waits
    mrdisc.solicited(V4, "eth0")  # ... and shares that one answer
    assert len(sock.sent) == 4
    run_until(mrdisc, clock, start + 10 + 3)
    assert times(sock, start)[3:] == [10.0, 10.0 + MIN_SOLICITED_GAP]
    # The periodic advertisement keeps its own time.
    run_until(mrdisc, clock, start + 4 + MAX_ADVERT_INTERVAL + ADVERT_JITTER + 0.1)
    assert times(sock, start)[-1] == 4 + MAX_ADVERT_INTERVAL + ADVERT_JITTER


def test_switching_off_or_removing_sends_a_termination_and_a_lost_interface_none(manager):
    mrdisc, clock, opener = manager
    mrdisc.vif_added(vif("eth0"))
    mrdisc.vif_added(vif("eth0", mrdisc=False))
    assert opener.last("eth0").sent[-1][1] == "termination" and opener.last("eth0").closed
    mrdisc.vif_added(vif("eth1"))
    mrdisc.vif_removed(vif("eth1"))
    assert opener.last("eth1").sent[-1][1] == "termination" and opener.last("eth1").closed
    mrdisc.vif_added(vif("eth2"))
    mrdisc.vif_added(vif("eth2", index=None))  # gone: nothing can be said on it
    assert opener.last("eth2").sent == [(clock.now, "advertisement")]
    assert opener.last("eth2").closed
    assert mrdisc.advertisers == {}


def test_two_tables_share_one_advertiser_until_the_last_lets_go(manager):
    mrdisc, clock, opener = manager
    mrdisc.vif_added(vif("eth0", table=0))
    mrdisc.vif_added(vif("eth0", table=10))
    assert len(opener.opened) == 1
    mrdisc.vif_removed(vif("eth0", table=0))
    assert not opener.last("eth0").closed
    mrdisc.vif_removed(vif("eth0", table=10))
    assert opener.last("eth0").closed


def test_stop_on_purpose_terminates_and_a_restart_does_not(manager):
    mrdisc, clock, opener = manager
    mrdisc.vif_added(vif("eth0"))
    mrdisc.stop(terminate=False)
    assert [what for _, what in opener.last("eth0").sent] == ["advertisement"]
    mrdisc.vif_added(vif("eth1"))  # an event after the stop opens nothing
    assert len(opener.opened) == 1
    again = Mrdisc(clock, opener)
    again.vif_added(vif("eth0"))
    again.stop(terminate=True)
    assert [what for _, what in opener.last("eth0").sent] == ["advertisement", "termination"]


# -- through the engine: AddVif, hotplug, the state file ---------------------------------
class EngineBench:
    def __init__(self, state_file) -> None:
        self.kernel = FakeKernel({"up0": 2, "down0": 3})
        self.clock = Clock()
        self.opener = Opener(self.clock, self.kernel)
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(state_file, kernel=self.kernel, clock=self.clock)
        self.engine.mrdisc.opener = self.opener
        self.loop.run_until_complete(self.engine.start())

    def deliver(self) -> None:
        self.loop.run_until_complete(asyncio.wait_for(self.kernel.all_read(), 5.0))

    def close(self, flush: bool = True) -> None:
        self.loop.run_until_complete(self.engine.stop(flush))
        self.loop.close()


def test_add_vif_with_mrdisc_advertises_follows_the_interface_and_terminates(tmp_path):
    bench = EngineBench(tmp_path / "state.json")
    try:
        status = bench.engine.add_vif(VifConfig("down0", V4, mrdisc=True))
        assert status.mrdisc
        assert [v.mrdisc for v in bench.engine.list_vifs()] == [True]
        first = bench.opener.last("down0")
        assert [what for _, what in first.sent] == ["advertisement"]
        bench.kernel.link("del", "down0", 3)
        bench.deliver()
        assert first.closed and first.sent[-1][1] == "advertisement"  # nothing said
        bench.kernel.link("new", "down0", 33)
        bench.deliver()
        again = bench.opener.last("down0")
        assert again is not first and again.ifindex == 33
        assert [what for _, what in again.sent] == ["advertisement"]  # initial ones again
        bench.engine.add_vif(VifConfig("down0", V4, mrdisc=False))
        assert again.closed and again.sent[-1][1] == "termination"
        assert [v.mrdisc for v in bench.engine.list_vifs()] == [False]
    finally:
        bench.close()


def test_mrdisc_is_kept_in_the_state_file_and_comes_back_after_a_restart(tmp_path):
    state = tmp_path / "state.json"
    bench = EngineBench(state)
    bench.engine.add_vif(VifConfig("down0", V4, mrdisc=True))
    bench.engine.add_vif(VifConfig("up0", V4))
    bench.close()  # a stop on purpose: a termination
    assert bench.opener.last("down0").sent[-1][1] == "termination"
    vifs = {v["interface"]: v for v in json.loads(state.read_text())["vifs"]}
    assert vifs["down0"]["mrdisc"] is True and "mrdisc" not in vifs["up0"]
    again = EngineBench(state)
    try:
        assert {v.interface: v.mrdisc for v in again.engine.list_vifs()} == {
            "down0": True,
            "up0": False,
        }
        assert [what for _, what in again.opener.last("down0").sent] == ["advertisement"]
    finally:
        again.close()


def test_a_state_file_of_the_previous_format_loads_without_mrdisc(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(
        '{"schema": 1, "generator": "mfc-dbus",\n "vifs": [{"interface": "down0", '
        '"family": "ipv4", "table": 0, "ttl_threshold": 3}],\n "routes": [\n]}\n'
    )
    loaded = StateFile(state).load()
    assert [(v.interface, v.ttl_threshold, v.mrdisc) for v in loaded.vifs] == [("down0", 3, False)]


# -- the configuration file's `phyint IF mrdisc` -----------------------------------------
def test_phyint_mrdisc_advertises_on_both_families_and_reload_switches_it_off(tmp_path):
    config = tmp_path / "mfc-dbus.conf"
    config.write_text("phyint down0 mrdisc\n")
    kernel = FakeKernel({"up0": 2, "down0": 3})
    clock = Clock()
    opener = Opener(clock, kernel)
    loop = asyncio.new_event_loop()
    engine = Engine(tmp_path / "state.json", kernel=kernel, clock=clock, config_file=config)
    engine.mrdisc.opener = opener
    try:
        loop.run_until_complete(engine.start())
        assert {(v.family, v.interface, v.mrdisc) for v in engine.list_vifs()} == {
            (V4, "down0", True),
            (V6, "down0", True),
        }
        assert {(s.family, s.interface) for s in opener.opened} == {(V4, "down0"), (V6, "down0")}
        state = tmp_path / "state.json"
        assert not state.exists() or '"mrdisc"' not in state.read_text()  # the file's, not ours
        config.write_text("phyint down0\n")
        engine.reload()
        assert [s.sent[-1][1] for s in opener.opened] == ["termination", "termination"]
        assert all(s.closed for s in opener.opened)
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()


def test_config_check_names_mrdisc_on_a_disabled_phyint(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.conf"
    bad.write_text("phyint eth0 mrdisc\nphyint eth1 disable mrdisc\n")
    checked = subprocess.run(
        [sys.executable, "-m", "mfc_dbus.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 78, checked
    assert f"{bad}:2:21: mrdisc on a disabled phyint would never run" in checked.stderr
    assert "drop 'disable' or 'mrdisc'" in checked.stderr
    assert ":1:" not in checked.stderr  # `phyint eth0 mrdisc` is fine


def test_a_send_that_fails_is_logged_and_the_schedule_goes_on(manager, caplog):
    import errno
    import logging

    mrdisc, clock, opener = manager
    failures = iter([OSError(errno.ENETDOWN, "Network is down"), OSError(errno.EPERM, "no")])

    def failing(advertisement: Advertisement) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        sock.sent.append((clock.now, "advertisement"))

    caplog.set_level(logging.DEBUG, logger="mfc_dbus.engine.mrdisc")
    start = clock.now
    mrdisc.vif_added(vif("eth0"))
    sock = opener.last("eth0")
    sock.advertise = failing  # type: ignore[method-assign]
    sock.sent.clear()
    run_until(mrdisc, clock, start + 30)  # the second fails (link down), the third too
    levels = [r.levelname for r in caplog.records if "not sent" in r.getMessage()]
    assert levels == ["DEBUG", "WARNING"]  # link down: debug; any other error: warning
    period = MAX_ADVERT_INTERVAL + ADVERT_JITTER
    assert times(sock, start) == [2 * MAX_INITIAL_ADVERT_INTERVAL + period]  # on time
