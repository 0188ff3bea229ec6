"""Engine logic against a fake kernel (no root): all-or-nothing batches, the VIF
limit, validation messages, in-place replacement, leases, persistence, reload,
hotplug bookkeeping."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path

import pytest
from engine_helpers import route
from fake_kernel import FakeKernel

from mfc_dbus.engine import Engine
from mfc_dbus.engine.state import StateFile, StateFileError
from mfc_dbus.errors import InvalidArgument, KernelBusy, KernelError, LimitExceeded, NotFound
from mfc_dbus.kernel import SgCounters, Upcall, UpcallKind
from mfc_dbus.model import Family, Route, VifConfig, make_route_key

V4 = Family.IPV4


class Harness:
    def __init__(self, state_file=None, kernel: FakeKernel | None = None, **kwargs) -> None:
        self.kernel = kernel or FakeKernel()
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(state_file, kernel=self.kernel, **kwargs)
        self.loop.run_until_complete(self.engine.start())

    def sock(self, family=V4, table=0):
        return self.kernel.sockets[(family, table)]

    def deliver(self) -> None:
        """Run the engine's loop until it has read, and so handled, every link event and
        upcall queued on the fake kernel."""
        self.loop.run_until_complete(asyncio.wait_for(self.kernel.all_read(), 5.0))

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.stop())
        self.loop.close()


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path / "state.json")
    yield harness
    harness.close()


def on_disk(state: Path) -> tuple[str | None, str | None]:
    """The snapshot's and the journal's text (None when absent)."""
    journal = state.with_name(state.name + ".journal")
    return tuple(p.read_text() if p.exists() else None for p in (state, journal))


def many(count: int, outputs=("down0",)) -> list[Route]:
    return [route(f"10.0.{n // 250}.{n % 250 + 1}", "233.252.0.1", "up0", *outputs)
            for n in range(count)]  # fmt: skip


def test_batch_rolls_back_everything_when_the_kernel_refuses_one(h, tmp_path):
    h.engine.add_route(route("192.0.2.9", "233.252.0.9", "up0", "down0"))
    before_file = on_disk(tmp_path / "state.json")
    before_mfc = dict(h.sock().mfc)
    h.sock().fail_add_mfc_after = 5
    with pytest.raises(KernelError, match="Cannot allocate memory"):
        h.engine.add_routes(many(10, outputs=("down0", "down1")))
    assert h.sock().mfc == before_mfc
    assert sorted(h.sock().vifs) == [0, 1]  # down1's VIF, added for the batch, is gone
    assert [s.route.key for s in h.engine.list_routes()] == [
        make_route_key("192.0.2.9", "233.252.0.9")
    ]
    assert [v.interface for v in h.engine.list_vifs()] == ["up0", "down0"]
    assert on_disk(tmp_path / "state.json") == before_file
    h.sock().fail_add_mfc_after = None
    assert h.engine.add_routes(many(10, outputs=("down0", "down1"))) == 10
    assert len(h.sock().mfc) == 11


def test_33rd_interface_is_limit_exceeded_and_nothing_is_applied(h):
    names = [f"if{n}" for n in range(33)]
    routes = [route(f"10.1.0.{n + 1}", "233.252.0.1", names[0], names[n]) for n in range(1, 33)]
    with pytest.raises(LimitExceeded, match=r"ipv4 table 0 would need 33 interfaces.*32"):
        h.engine.add_routes(routes)
    assert h.engine.list_routes() == [] and h.engine.list_vifs() == []
    assert h.engine.add_routes(routes[:31]) == 31  # 32 interfaces fit
    with pytest.raises(LimitExceeded, match="if32"):
        h.engine.add_route(routes[31])
    assert h.engine.route_count == 31
    # Another table has its own 32.
    other = route("10.1.0.99", "233.252.0.1", "if32", "if0", table=5)
    assert h.engine.add_route(other).state == "pending"


@pytest.mark.parametrize(
    "bad, message",
    [
        (route("10.0.0.1", "233.252.0.1", "up0", "down0", "down0"), "down0 more than once"),
        (route("10.0.0.1", "233.252.0.1", "up0", "a/b"), "'a/b' is not valid"),
        (Route(make_route_key("10.0.0.1", "233.252.0.1"), "up0", ("down0", 5)), "string"),
        (Route(make_route_key("10.0.0.1", "233.252.0.1"), "up0", ["down0"]), "not a list"),
        (Route("10.0.0.1 233.252.0.1", "up0", ("down0",)), "is not a RouteKey"),
    ],
)  # fmt: skip
def test_invalid_routes_name_the_value_and_change_nothing(h, bad, message):
    with pytest.raises(InvalidArgument, match=message):
        h.engine.add_routes([route("10.9.9.9", "233.252.0.1", "up0", "down0"), bad])
    assert h.engine.route_count == 0 and h.sock().mfc == {}


def test_replacing_outputs_rewrites_in_place_without_delete(h):
    h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
    h.kernel.log.clear()
    h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down1"))
    calls = [c[0] for c in h.kernel.log]
    assert "del_mfc" not in calls
    assert calls.index("add_vif") < calls.index("add_mfc") < calls.index("del_vif")
    (entry,) = h.sock().mfc.values()
    assert entry == (0, {2: 1})  # down1 got slot 2; down0's slot 1 was freed afterwards
    assert [v.interface for v in h.engine.list_vifs()] == ["up0", "down1"]


def test_lease_routes_are_not_persisted_and_leave_with_their_owner(h, tmp_path):
    h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
    h.engine.add_route(route("10.0.0.2", "233.252.0.1", "up0", "down0", owner=":1.42",
                             persistent=False))  # fmt: skip
    h.engine.add_route(route("10.0.0.3", "233.252.0.1", "up0", "down0", persistent=False))
    saved = StateFile(tmp_path / "state.json").load()  # snapshot + journal
    assert [r.key.texts[0] for r in saved.routes] == ["10.0.0.1"]
    gone = h.engine.remove_routes_owned_by(":1.42")
    assert [r.key.texts[0] for r in gone] == ["10.0.0.2"]
    assert len(h.sock().mfc) == 2


def test_state_round_trip_and_reload_applies_only_the_difference(tmp_path):
    state = tmp_path / "state.json"
    first = Harness(state)
    first.engine.add_routes(many(3))
    first.engine.add_route(route("*", "ff3e::1", "up0", "down0", table=7))
    first.engine.add_vif(VifConfig("down1", V4, 0, ttl_threshold=5))
    first.close()
    second = Harness(state)
    assert second.engine.route_count == 4
    assert (4, 5) in second.sock().vifs.values()  # down1 (ifindex 4) with its threshold
    assert second.sock(Family.IPV6, 7).vifs  # the IPv6 table 7 was opened and filled
    saved = json.loads(state.read_text())
    saved["routes"] = [r for r in saved["routes"] if r["source"] != "10.0.0.1"]
    saved["routes"][0]["outputs"] = ["down0", "down1"]
    saved["routes"].append({"source": "10.5.5.5", "group": "233.252.0.2", "input": "up0",
                            "outputs": ["down1"]})  # fmt: skip
    state.write_text(json.dumps(saved))
    result = second.engine.reload()
    assert (result.added, result.removed, result.changed, result.unchanged) == (1, 1, 1, 2)
    assert len(second.sock().mfc) == 3
    state.write_text("{ not json")
    with pytest.raises(StateFileError, match="is not valid"):
        second.engine.reload()
    assert second.engine.route_count == 4  # nothing changed
    second.close()


@pytest.mark.parametrize(
    "text", ['{"schema": 1, "routes": [{"source": "*", "grou', '{"schema": 99}', "[]",
             '{"schema": 1, "routes": [{"group": "10.0.0.1", "input": "a", "outputs": ["b"]}]}']
)  # fmt: skip
def test_bad_state_file_is_set_aside_reported_and_start_is_empty(tmp_path, caplog, text):
    state = tmp_path / "state.json"
    state.write_text(text)
    with caplog.at_level(logging.ERROR):
        harness = Harness(state)
    try:
        assert harness.engine.route_count == 0
        assert str(state) in harness.engine.state_error
        aside = list(tmp_path.glob("state.json.corrupt-*"))
        assert [p.read_text() for p in aside] == [text]
        assert "moved to" in caplog.text
    finally:
        harness.close()


def test_a_failed_state_write_undoes_the_change():
    harness = Harness(Path("/proc/mfc-dbus-no-such-dir/state.json"))  # mkdir fails
    try:
        with pytest.raises(StateFileError, match="the change was not applied"):
            harness.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
        assert harness.engine.route_count == 0 and harness.sock().mfc == {}
        assert harness.sock().vifs == {}
        # Non-persistent routes need no file.
        harness.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0",
                                       persistent=False))  # fmt: skip
        assert len(harness.sock().mfc) == 1
    finally:
        harness.close()


def test_hotplug_bookkeeping_follows_link_events(h):
    h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0", "eth9"))
    (status,) = h.engine.list_routes()
    assert status.state == "pending" and status.missing_interfaces == ("eth9",)
    assert h.sock().mfc[(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("233.252.0.1"))] \
        == (0, {1: 1})  # fmt: skip
    h.kernel.link("new", "eth9", 40)
    h.deliver()
    assert h.engine.list_routes()[0].state == "installed"
    assert h.sock().vifs[2] == (40, 1)
    assert list(h.sock().mfc.values()) == [(0, {1: 1, 2: 1})]
    h.kernel.link("del", "up0", 2)
    h.deliver()
    assert h.sock().mfc == {} and h.engine.list_routes()[0].missing_interfaces == ("up0",)
    h.kernel.link("new", "up0", 41)
    h.deliver()
    assert h.sock().vifs[0] == (41, 1)
    assert list(h.sock().mfc.values()) == [(0, {1: 1, 2: 1})]


def test_remove_vif_refuses_while_used_and_not_found_when_absent(h):
    h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
    with pytest.raises(InvalidArgument, match=r"still used by 1 route\(s\), such as \(10.0.0.1"):
        h.engine.remove_vif("down0", V4)
    with pytest.raises(NotFound, match="'down1' has no ipv4 VIF"):
        h.engine.remove_vif("down1", V4)
    h.engine.add_vif(VifConfig("down1", V4))
    assert h.engine.remove_vif("down1", V4).interface == "down1"
    with pytest.raises(NotFound):
        h.engine.remove_route(make_route_key("10.0.0.2", "233.252.0.1"))


def test_kernel_busy_table_refuses_writes_but_serves_reads(tmp_path):
    kernel = FakeKernel()
    kernel.busy.add((V4, 0))
    harness = Harness(tmp_path / "state.json", kernel=kernel)
    try:
        assert harness.engine.families == (Family.IPV6,)
        with pytest.raises(KernelBusy):
            harness.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
        assert harness.engine.list_routes() == []
        assert not (tmp_path / "state.json").exists()
        harness.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0", table=3))
        assert harness.engine.route_count == 1
    finally:
        harness.close()


def _journal(state: Path) -> Path:
    return state.with_name(state.name + ".journal")


def _journal_lines(state: Path) -> list[str]:
    """The lines of every journal (the numbered ones a compaction set aside, then the
    current one)."""
    file = StateFile(state)
    paths = [*file.numbered_journals(), file.journal_path]
    return [line for path in paths if path.exists() for line in path.read_text().splitlines()]


def test_changes_are_journalled_and_replayed_after_a_crash(tmp_path):
    """Every acknowledged change is in the journal before the call returns: an engine
    that is never stopped (a crash) loses nothing. Start-up only replays (a restart is
    ready without rewriting its routes); the stop compacts."""
    state = tmp_path / "state.json"
    first = Harness(state)
    first.engine.add_routes(many(3))
    first.engine.add_route(route("*", "233.252.0.7", "up0", "down1", table=4))
    first.engine.remove_route(make_route_key("10.0.0.2", "233.252.0.1"))
    first.engine.add_route(route("10.0.0.3", "233.252.0.1", "up0", "down1"))  # replaced
    first.engine.add_vif(VifConfig("down2", V4, 0, ttl_threshold=3))
    first.engine.add_vif(VifConfig("down3", V4, 0))
    first.engine.remove_vif("down3", V4)
    assert len(_journal(state).read_text().splitlines()) == 7  # one line per change
    expected = {(s.route.key, s.route.outputs) for s in first.engine.list_routes()}
    first.loop.close()  # no stop(): as if killed
    second = Harness(state)
    try:
        assert {(s.route.key, s.route.outputs) for s in second.engine.list_routes()} == expected
        assert [v.interface for v in second.engine.list_vifs() if v.explicit] == ["down2"]
        assert len(_journal(state).read_text().splitlines()) == 7  # replayed, kept
    finally:
        second.close()
    assert _journal_lines(state) == []  # compacted into the snapshot at stop
    saved = json.loads(state.read_text())
    assert len(saved["routes"]) == 3 and len(saved["vifs"]) == 1


def test_a_torn_journal_tail_is_ignored_with_a_log_line(tmp_path, caplog):
    state = tmp_path / "state.json"
    first = Harness(state)
    first.engine.add_routes(many(2))
    first.loop.close()
    with _journal(state).open("a") as journal:  # a batch whose write never completed
        journal.write('[{"route": {"source": "10.7.7.7", "group": "233.252.0.1", "inp')
    with caplog.at_level(logging.WARNING):
        second = Harness(state)
    try:
        assert second.engine.route_count == 2 and second.engine.state_error is None
        assert "torn last line" in caplog.text
    finally:
        second.close()


def test_a_change_after_a_torn_journal_tail_is_not_written_onto_it(tmp_path):
    state = tmp_path / "state.json"
    first = Harness(state)
    first.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
    first.loop.close()
    with _journal(state).open("a") as journal:  # the crash: a line never completed
        journal.write('[{"route": {"source": "10.7')
    second = Harness(state)
    second.engine.add_route(route("10.0.0.2", "233.252.0.1", "up0", "down0"))
    second.loop.close()  # a crash again, before any compaction
    third = Harness(state)
    try:
        assert third.engine.state_error is None
        assert {s.route.key.texts[0] for s in third.engine.list_routes()} == {
            "10.0.0.1",
            "10.0.0.2",
        }
    finally:
        third.close()


def test_a_corrupt_journal_line_sets_both_files_aside(tmp_path):
    state = tmp_path / "state.json"
    first = Harness(state)
    first.engine.add_routes(many(2))
    first.loop.close()
    with _journal(state).open("a") as journal:
        journal.write('[{"bogus": 1}]\n')
    second = Harness(state)
    try:
        assert second.engine.route_count == 0 and "unknown journal operation" in (
            second.engine.state_error or ""
        )
        assert second.engine.state_file_aside is not None
        assert not _journal(state).exists()
        assert list(tmp_path.glob("state.json.corrupt-*.journal"))
    finally:
        second.close()


def test_the_journal_is_compacted_when_it_outgrows_the_snapshot(h, tmp_path):
    state = tmp_path / "state.json"
    persistence = h.engine._state
    compactions = 0
    for n in range(200):
        h.engine.add_route(route(f"10.1.0.{n + 1}", "233.252.0.1", "up0", "down0"))
        h.engine.remove_route(make_route_key(f"10.1.0.{n + 1}", "233.252.0.1"))
        if persistence.compacting:
            compactions += 1
            persistence.wait_for_compaction()  # the next call starts the next one
            assert len(_journal_lines(state)) <= 2 * 0 + 64 + 2  # since the set-aside
    h.engine.add_route(route("10.2.0.1", "233.252.0.1", "up0", "down0"))
    persistence.wait_for_compaction()
    assert compactions >= 400 // 66  # every 2 * size + 64 entries
    assert [r.key.texts[0] for r in StateFile(state).load().routes] == ["10.2.0.1"]
    # A batch is one journal line; stop() compacts.
    h.engine.add_routes(many(500))
    persistence.wait_for_compaction()
    assert len(StateFile(state).load().routes) == 501
    h.loop.run_until_complete(h.engine.stop())
    assert len(json.loads(state.read_text())["routes"]) == 501
    assert _journal_lines(state) == []


def test_learned_flow_expiry_counts_packets_minus_wrong_if():
    """Activity is packets - wrong_if: the kernel counts a packet that arrives on a wrong
    interface in both counters, and such packets alone must not keep a flow alive."""
    now = [1000.0]
    h = Harness(None, clock=lambda: now[0], learned_expiry=60.0, expiry_interval=3600.0)
    try:
        h.engine.add_route(route("*", "233.252.0.1", "up0", "down0"))
        up0 = h.engine.list_vifs()[0]
        assert up0.interface == "up0"
        group = ipaddress.ip_address("233.252.0.1")
        forwarded, wrong = (ipaddress.ip_address(f"192.0.2.{n}") for n in (10, 11))
        for source in (forwarded, wrong):
            upcall = Upcall(UpcallKind.NOCACHE, V4, 0, source.packed, group.packed, up0.index)
            h.sock().queue_upcall(upcall)
        h.deliver()
        learned = {s.route.key.texts[0] for s in h.engine.list_routes() if s.state == "learned"}
        assert learned == {"192.0.2.10", "192.0.2.11"}

        for look in range(1, 6):  # every 30 s both flows' packet counters rose by 100
            h.sock().counters[(forwarded, group)] = SgCounters(100 * look, 0, 0)
            # all of `wrong`'s came in on a wrong interface: pktcnt and wrong_if both rise
            h.sock().counters[(wrong, group)] = SgCounters(100 * look, 0, 100 * look)
            h.engine.expire_learned()
            now[0] += 30.0

        learned = {s.route.key.texts[0] for s in h.engine.list_routes() if s.state == "learned"}
        assert learned == {"192.0.2.10"}
        assert set(h.sock().mfc) == {(forwarded, group)}
    finally:
        h.close()


class Recorder:
    """A listener that writes down what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple] = []

    def route_added(self, route: Route) -> None:
        self.told.append(("route_added", str(route.key), route.outputs))

    def route_removed(self, route: Route) -> None:
        self.told.append(("route_removed", str(route.key)))

    def vif_added(self, vif) -> None:
        self.told.append(("vif_added", vif.interface, vif.index))

    def vif_removed(self, vif) -> None:
        self.told.append(("vif_removed", vif.interface, vif.index))


class Failing:
    def __getattr__(self, name):
        def fail(value) -> None:
            raise RuntimeError(f"{name} failed")

        return fail


def test_listeners_hear_of_calls_hotplug_and_flows_but_not_of_a_failed_call(h, caplog):
    listener = Recorder()
    h.engine.add_listener(Failing())  # logged; the next listener is still told
    h.engine.add_listener(listener)
    with caplog.at_level(logging.ERROR):
        h.engine.add_route(route("10.0.0.1", "233.252.0.1", "up0", "down0"))
    assert "route_added failed" in caplog.text
    assert listener.told == [
        ("vif_added", "up0", 0),
        ("vif_added", "down0", 1),
        ("route_added", "(10.0.0.1, 233.252.0.1)", ("down0",)),
    ]
    listener.told.clear()
    h.sock().fail_add_mfc_after = 0
    with pytest.raises(KernelError):
        h.engine.add_route(route("10.0.0.2", "233.252.0.1", "up0", "down1"))
    assert listener.told == []  # down1's VIF came and went with the failed call
    h.sock().fail_add_mfc_after = None

    h.kernel.link("del", "down0", 3)
    h.deliver()
    assert listener.told == [
        ("vif_added", "down0", None),  # still allocated, its interface gone
        ("route_added", "(10.0.0.1, 233.252.0.1)", ("down0",)),  # now pending
    ]
    listener.told.clear()

    h.engine.add_route(route("*", "233.252.0.2", "up0", "down1"))
    up0 = h.engine.list_vifs()[0]
    source, group = ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("233.252.0.2")
    h.sock().queue_upcall(
        Upcall(UpcallKind.NOCACHE, V4, 0, source.packed, group.packed, up0.index)
    )
    h.deliver()
    assert listener.told[-1] == ("route_added", "(192.0.2.7, 233.252.0.2)", ("down1",))
    listener.told.clear()
    h.engine.remove_route(make_route_key("*", "233.252.0.2"))
    assert listener.told == [
        ("route_removed", "(192.0.2.7, 233.252.0.2)"),  # the flow went with its template
        ("vif_removed", "down1", 2),
        ("route_removed", "(*, 233.252.0.2)"),
    ]


def test_flush_learned_drops_the_flows_and_keeps_the_templates(h):
    h.engine.add_route(route("*", "233.252.0.1", "up0", "down0"))
    h.engine.add_route(route("*", "233.252.0.2", "up0", "down1", table=5))
    up0 = h.engine.list_vifs()[0]
    group = ipaddress.ip_address("233.252.0.1")
    for n in (10, 11):
        source = ipaddress.ip_address(f"192.0.2.{n}")
        h.sock().queue_upcall(
            Upcall(UpcallKind.NOCACHE, V4, 0, source.packed, group.packed, up0.index)
        )
    h.deliver()
    assert sum(s.state == "learned" for s in h.engine.list_routes()) == 2
    assert h.engine.flush_learned(table=5) == 0
    assert h.engine.flush_learned() == 2
    assert [s.state for s in h.engine.list_routes()] == ["installed", "installed"]
    assert h.sock().mfc == {}  # the learned entries left the kernel


def test_pim_mode_is_on_exactly_while_the_table_has_templates(h):
    h.engine.add_route(route("192.0.2.1", "233.252.0.1", "up0", "down0"))
    assert (h.sock().pim_mode, h.sock().assert_mode) == (False, True)
    h.engine.add_route(route("*", "233.252.0.2", "up0", "down0"))
    h.engine.add_route(route("192.0.2.0/24", "233.252.0.3", "up0", "down1"))
    assert (h.sock().pim_mode, h.sock().assert_mode) == (True, True)
    h.engine.remove_route(make_route_key("*", "233.252.0.2"))
    assert h.sock().pim_mode
    h.engine.remove_route(make_route_key("192.0.2.0/24", "233.252.0.3"))
    assert (h.sock().pim_mode, h.sock().assert_mode) == (False, True)
