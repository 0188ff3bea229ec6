"""Calls sent without expecting a reply from a caller that leaves the bus at once.

The service learns of such a call only after its caller has gone: the test keeps the
service's loop (its own) busy while the caller sends and leaves, so the order is
certain. An unknown caller cannot be identified: the call is not made, and the log
says so in one line. A root caller the service already knows is made.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

from mfc_dbus.service.audit import AUDIT_LOGGER

from .harness import running_service
from .signals import Subscriber

CALLER = str(Path(__file__).with_name("gone_caller.py"))
KNOWN, GONE = "233.252.0.1", "233.252.0.2"


async def _logged(caplog, text: str, timeout: float = 5.0) -> str:
    """The first log message containing `text` (waited for while the loop runs)."""
    async with asyncio.timeout(timeout):
        while True:
            for record in caplog.records:
                if text in record.getMessage():
                    return record.getMessage()
            await asyncio.sleep(0.01)


def test_an_unknown_caller_already_gone_is_not_served_and_logged(bus, polkit, caplog) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, _c):
            # Blocking on purpose: the service reads the call only once its caller is gone.
            done = subprocess.run(
                [sys.executable, CALLER, bus.address, GONE],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            name = done.stdout.strip()
            line = await _logged(caplog, "was not made")
            assert line == (
                f"AddRoute from {name} was not made: "
                "the caller left the bus before it could be authorized"
            )
            assert engine.route_count == 0

    asyncio.run(scenario())
    audit = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
    assert audit == []  # nothing changed, so nothing to audit
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == []  # one line says it all


def test_a_root_caller_already_known_is_served_after_it_left(bus, polkit, caplog) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, _c):
            subscriber = await Subscriber.connect(bus.address)
            caller = subprocess.Popen(
                [sys.executable, CALLER, bus.address, GONE, "--known-first", KNOWN],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert await asyncio.to_thread(caller.stdout.readline) == "known\n"
                # Blocking on purpose, as above.
                caller.stdin.write("go\n")
                caller.stdin.flush()
                name = caller.stdout.readline().strip()
                assert caller.wait(30) == 0
                await subscriber.wait_for("RouteAdded", "*", GONE)
                assert engine.route_count == 2
            finally:
                subscriber.close()
                if caller.poll() is None:
                    caller.kill()
                    caller.wait()
            lines = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
            assert f"uid=0 sender={name} AddRoute: (*, {GONE}) in up0 out down0" in lines

    asyncio.run(scenario())
