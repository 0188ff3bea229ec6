"""Running an engine inside the lab's router namespace, from a test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from mfc_dbus.engine import Engine
from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family, Route, make_route_key
from mfc_lab import Lab, in_netns


def route(source: str, group: str, input: str, *outputs: str, table: int = 0, **kwargs) -> Route:
    return Route(make_route_key(source, group, table), input, tuple(outputs), **kwargs)


@contextlib.contextmanager
def engine_in(lab: Lab, state_file: Path | None = None, **kwargs) -> Iterator[Engine]:
    """An engine started inside the lab's router namespace, on a fresh event loop that
    the test drives with `spin_until`. The current thread stays in the router namespace for
    the body (in_netns nests, so senders and receivers still work)."""
    loop = asyncio.new_event_loop()
    with in_netns(lab.rtr):
        engine = Engine(state_file, **kwargs)
        engine.loop = loop  # type: ignore[attr-defined]
        loop.run_until_complete(engine.start())
        try:
            yield engine
        finally:
            loop.run_until_complete(engine.stop())
            loop.close()


def spin_until(engine: Engine, predicate, timeout: float = 3.0, step: float = 0.02) -> bool:
    """Run the engine's loop (upcalls, link events) until `predicate()` holds or
    `timeout` passes; whether it holds."""
    loop: asyncio.AbstractEventLoop = engine.loop  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        loop.run_until_complete(asyncio.sleep(step))
    return predicate()


def kernel_view(lab: Lab, family: Family, table: int = 0) -> dict:
    """The kernel's own read-back (rtnetlink), shaped like Engine.kernel_view."""
    with in_netns(lab.rtr), NetlinkReader() as reader:
        routes = reader.dump_mfc(family, table)
    return {(r.source, r.group): (r.input, dict(r.outputs)) for r in routes}
