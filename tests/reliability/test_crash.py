"""Crash safety: SIGKILL the service at random moments while clients add and remove
persistent routes. After every restart the state file parses, the service lists what
the file holds, the kernel holds what the service lists, every route whose add was
acknowledged is in the kernel and every route whose removal was acknowledged is not.
A call that was in flight when the service died may have gone either way."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import MessageType

from mfc_dbus.engine.state import StateFile
from mfc_dbus.model import Family
from mfc_lab import Lab
from mfc_lab.daemon import ServiceProcess, kernel_entries

from .helpers import Caller, expected_kernel, require_root, served

GROUP = "233.252.0.1"
WORKERS = 4
KEYS_PER_WORKER = 60
NOT_FOUND = "org.mfc.Forwarding1.Error.NotFound"
# What a caller sees when the service dies under its call, or is not there (yet).
GONE = {
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
}


def source(worker: int, n: int) -> str:
    return f"10.{worker}.{n // 250}.{n % 250 + 1}"


@dataclass
class Ledger:
    """Per source: True (add acknowledged), False (removal acknowledged), None (unknown:
    the call was in flight or refused because the service was gone)."""

    known: dict[str, bool | None] = field(default_factory=dict)
    acknowledged: int = 0

    def present(self) -> set[str]:
        return {s for s, state in self.known.items() if state is True}

    def absent(self) -> set[str]:
        return {s for s, state in self.known.items() if state is False}


async def worker(caller: Caller, w: int, ledger: Ledger, rng: random.Random,
                 stop: asyncio.Event) -> None:  # fmt: skip
    while not stop.is_set():
        if rng.random() < 0.1:  # a batch of five
            batch = [source(w, rng.randrange(KEYS_PER_WORKER)) for _ in range(5)]
            batch = list(dict.fromkeys(batch))
            for s in batch:
                ledger.known[s] = None
            body = [[(s, GROUP, "up0", ["down0"], {}) for s in batch], {}]
            reply = await caller.call("AddRoutes", "a(sssasa{sv})a{sv}", body)
            if reply.message_type is MessageType.METHOD_RETURN:
                assert reply.body == [len(batch)]
                for s in batch:
                    ledger.known[s] = True
                ledger.acknowledged += 1
            else:
                assert reply.error_name in GONE, (reply.error_name, reply.body)
                await asyncio.sleep(0.005)
            continue
        s = source(w, rng.randrange(KEYS_PER_WORKER))
        adding = ledger.known.get(s) is not True
        ledger.known[s] = None
        if adding:
            reply = await caller.call("AddRoute", "sssasa{sv}", [s, GROUP, "up0", ["down0"], {}])
        else:
            reply = await caller.call("RemoveRoute", "ssa{sv}", [s, GROUP, {}])
        if reply.message_type is MessageType.METHOD_RETURN:
            ledger.known[s] = adding
            ledger.acknowledged += 1
        elif reply.error_name == NOT_FOUND and not adding:
            ledger.known[s] = False  # it was not there: the earlier add was lost in a crash
        else:
            assert reply.error_name in GONE, (reply.error_name, reply.body)
            await asyncio.sleep(0.005)  # the service is down: do not spin


def check_after_restart(lab: Lab, state: Path, ledger: Ledger, routes: list[Any]) -> None:
    # The snapshot and its journal parse (never half written) and hold what is listed
    # (a start replays the journal; the stop or the journal's bound compacts it).
    saved = StateFile(state).load()
    in_file = {route.key.texts for route in saved.routes}
    listed = {(r[0], r[1]) for r in routes}
    assert listed == in_file
    kernel = kernel_entries(lab, Family.IPV4)
    assert expected_kernel(routes) == kernel
    in_kernel = {entry[0] for entry in kernel if entry[1] == GROUP}
    assert ledger.present() <= in_kernel, sorted(ledger.present() - in_kernel)
    assert not (ledger.absent() & in_kernel), sorted(ledger.absent() & in_kernel)


async def crash_loop(service: ServiceProcess, lab: Lab, state: Path, kills: int,
                     seed: int) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(seed)
    ledger = Ledger()
    caller = await Caller.connect(service.bus.address)
    restart_times: list[float] = []
    try:
        for _ in range(kills):
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(worker(caller, w, ledger, random.Random(rng.random()), stop))
                for w in range(WORKERS)
            ]
            await asyncio.sleep(rng.uniform(0.0, 0.25))  # a random moment
            service.kill()
            stop.set()
            await asyncio.gather(*tasks)
            started = time.monotonic()
            await asyncio.to_thread(service.start)
            restart_times.append(time.monotonic() - started)
            routes = await caller.list_routes()
            await asyncio.to_thread(check_after_restart, lab, state, ledger, routes)
    finally:
        caller.close()
    return {
        "acknowledged": ledger.acknowledged,
        "present": len(ledger.present()),
        "restart_max_s": max(restart_times),
    }


def run(tmp_path: Path, kills: int, seed: int) -> None:
    require_root()
    with Lab(downstreams=1) as lab, served(tmp_path, lab) as (_bus, service):
        state = tmp_path / "state.json"
        figures = asyncio.run(crash_loop(service, lab, state, kills, seed))
        print(f"{kills} SIGKILLs: {figures}")
        assert figures["acknowledged"] > kills * 5  # the clients did real work between kills
        assert figures["present"] > 0
        assert service.starts == kills + 1
        assert service.unhandled() == [], service.log_tail()
        assert not list(tmp_path.glob("state.json.corrupt-*"))  # never found a bad file


@pytest.mark.root
def test_crash_few(tmp_path: Path) -> None:
    run(tmp_path, 5, seed=3)


@pytest.mark.root
@pytest.mark.slow
def test_crash_50_sigkills(tmp_path: Path) -> None:
    run(tmp_path, 50, seed=11)
