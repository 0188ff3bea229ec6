"""Compaction of the state file's journals (engine/compaction.py) runs beside the calls:
no call waits behind a snapshot of every route, and a crash at any step of one loses
no acknowledged change. No root: a fake kernel, a real state file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import route
from fake_kernel import FakeKernel

from mfc_dbus.engine import Engine, persist
from mfc_dbus.engine.state import StateFile, StateFileError
from mfc_dbus.model import Route, make_route_key

HELD = 100_000
CALL_BOUND = 0.1  # s: issue 15, no call waits more than this behind a compaction


def many(count: int, outputs: tuple[str, ...] = ("down0",)) -> list[Route]:
    return [route(f"10.{n // 62500}.{n // 250 % 250}.{n % 250 + 1}", "233.252.0.1", "up0",
                  *outputs) for n in range(count)]  # fmt: skip


class Steps:
    """Stands in for persist.compaction_steps: runs the real steps, and lets a test
    hold a compaction after one of them, fail the first one (a full disk), or stop a
    later one after some steps, as a crash would."""

    def __init__(self) -> None:
        self.started = 0  # compactions started (on the event loop)
        self.hold_after: str | None = None
        self.reached = threading.Event()  # the held step is done
        self.release = threading.Event()
        self.fail_first = False
        self.stop_after: int | None = None  # steps done before the crash
        self.finished = threading.Event()  # the worker is past its last step

    def __call__(self, *args, **kwargs) -> Iterator[str]:
        self.started += 1
        return self._run(self.started, persist_steps(*args, **kwargs))

    def _run(self, run: int, steps: Iterator[str]) -> Iterator[str]:
        try:
            if run == 1 and self.fail_first:
                raise StateFileError("disk full (a test)")
            if self.stop_after == 0:
                return
            for done, step in enumerate(steps, 1):
                yield step
                if step == self.hold_after:
                    self.reached.set()
                    assert self.release.wait(30), "the test never released the compaction"
                if done == self.stop_after:
                    return
        finally:
            self.finished.set()


persist_steps = persist.compaction_steps


@pytest.fixture
def steps(monkeypatch) -> Steps:
    stand_in = Steps()
    monkeypatch.setattr(persist, "compaction_steps", stand_in)
    return stand_in


def listed(engine: Engine) -> set[tuple]:
    return {(s.route.key, s.route.input, s.route.outputs) for s in engine.list_routes()}


def saved(state: Path) -> set[tuple]:
    """What a start would read from the files."""
    return {(r.key, r.input, r.outputs) for r in StateFile(state).load().routes}


def test_a_call_is_answered_within_100_ms_while_100k_routes_are_compacted(tmp_path, steps):
    state = tmp_path / "state.json"
    loop = asyncio.new_event_loop()
    first = Engine(state, kernel=FakeKernel())
    loop.run_until_complete(first.start())
    first.add_routes(many(HELD))
    loop.run_until_complete(first.stop())
    steps.started = 0  # that was the stop's compaction
    steps.finished.clear()
    # Restored routes have no JSON text yet: the snapshot renders all 100,000.
    engine = Engine(state, kernel=FakeKernel())
    loop.run_until_complete(engine.start())
    try:
        engine.add_routes([route(*r.key.texts, "up0", "down0", table=5) for r in many(HELD)])
        assert len(engine.flush(table=5)) == HELD  # the journals: 200,000 changes
        steps.hold_after = "snapshot written"  # rendered, written and fsynced
        durations: list[float] = []
        during = 0  # calls answered while the compaction was running
        n = 0
        while not steps.reached.is_set() or during < 3:
            n += 1
            m = (n + 1) // 2  # added, then removed
            key = make_route_key(f"10.200.{m // 250}.{m % 250 + 1}", "233.252.0.1")
            start = time.perf_counter()
            if n % 2:
                engine.add_route(route(*key.texts, "up0", "down0"))
            else:
                engine.remove_route(key)
            durations.append(time.perf_counter() - start)
            if steps.started:
                assert not steps.finished.is_set()  # held: it cannot end before release
                during += 1
            assert n < 2_000, "no compaction started: the journal's bound was never met"
        steps.release.set()
        assert steps.finished.wait(30)
        # The calls that started it and ran beside it: rendering, writing and fsyncing
        # 100,000 routes; none waited for them.
        assert max(durations) < CALL_BOUND, sorted(durations)[-5:]
        assert during >= 3 and steps.started == 1
        engine.add_route(route("10.201.0.1", "233.252.0.1", "up0", "down0"))  # collects it
        assert saved(state) == listed(engine)
        assert len(listed(engine)) == HELD + 1 + n % 2
    finally:
        steps.release.set()
        loop.run_until_complete(engine.stop())
        loop.close()
    assert saved(state) == listed(engine)


# The second compaction's steps when a first one failed (two numbered journals).
STEPS = ["rendered", "snapshot written", "state.json.journal.1 removed",
         "state.json.journal.2 removed"]  # fmt: skip


@pytest.mark.parametrize("crash_before", range(len(STEPS) + 1), ids=[*STEPS, "complete"])
def test_a_crash_at_any_step_of_a_compaction_loses_nothing(tmp_path, steps, crash_before):
    """A first compaction fails after setting the journal aside (disk full); the second
    sets aside the new journal too and stops before step `crash_before` (the steps
    before it done); calls go on after it; then the process dies. What the next start
    reads is what was acknowledged."""
    state = tmp_path / "state.json"
    steps.fail_first = True
    steps.stop_after = crash_before
    loop = asyncio.new_event_loop()
    engine = Engine(state, kernel=FakeKernel())
    loop.run_until_complete(engine.start())
    engine.add_routes(many(40))
    n = 0
    while steps.started < 2:  # churn: each compaction starts at 2 * 40 + 64 changes
        n += 1
        key = make_route_key(f"10.9.{n // 250}.{n % 250 + 1}", "233.252.0.1")
        engine.add_route(route(*key.texts, "up0", "down1"))
        if n % 3:
            engine.remove_route(key)
        if steps.started == 1 and steps.finished.wait(10):
            steps.finished.clear()
        assert n < 1_000
    assert steps.finished.wait(10)  # stopped, or complete
    seen = [p.name for p in StateFile(state).numbered_journals()]
    assert seen == [name.split()[0] for name in STEPS[2 + max(0, crash_before - 2) :]]
    for m in range(5):  # calls after the crash point, before the process dies
        engine.add_route(route(f"10.8.0.{m + 1}", "233.252.0.2", "up0", "down0"))
    engine.remove_route(make_route_key("10.0.0.1", "233.252.0.1"))
    expected = listed(engine)
    loop.close()  # no stop(): as if killed
    assert saved(state) == expected
    steps.stop_after = None  # the next process's compactions run to the end
    again = Engine(state, kernel=FakeKernel())
    loop = asyncio.new_event_loop()
    loop.run_until_complete(again.start())
    try:
        assert listed(again) == expected and again.state_error is None
    finally:
        loop.run_until_complete(again.stop())
        loop.close()
    assert saved(state) == expected
    assert not StateFile(state).numbered_journals()  # the stop compacted them all
