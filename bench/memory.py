"""Memory of the running service: RSS after start, after 10,000 routes, after 10,000
add/remove cycles and after 10,000 more; the second 10,000 cycles must not grow it by
5 MB or more. The first ones fill what the libraries keep: dbus-fast 1.84 (Debian 12)
grows by 8-11 MiB there and then levels off (15 MiB after 60,000 cycles), 5.x by
about 1 MiB.

The real mfc-dbusd runs in the lab's router namespace on a private bus with a state
file; the routes arrive over D-Bus (AddRoutes, 1,000 per call), the cycles are
AddRoute + RemoveRoute of transient routes, 32 in flight. RSS is VmRSS from
/proc/PID/status, read after a short pause so that the service is idle.

    sudo .venv/bin/python bench/memory.py --json bench/results/memory.json
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import sys
import tempfile
import time
from pathlib import Path

from common import parse_args, rate, report
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess

MIB = 1024 * 1024
GROWTH_LIMIT_MIB = 5.0
GROUP = "233.252.0.1"


def sources(count: int, base: str) -> list[str]:
    first = ipaddress.ip_address(base)
    return [str(first + n) for n in range(count)]


async def call(bus: MessageBus, member: str, signature: str, body: list) -> list:
    reply = await bus.call(
        Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member=member,
                signature=signature, body=body)
    )  # fmt: skip
    if reply.message_type is not MessageType.METHOD_RETURN:
        raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
    return reply.body


async def add_routes(address: str, count: int) -> float:
    bus = await MessageBus(bus_address=address).connect()
    started = time.perf_counter()
    try:
        all_sources = sources(count, "10.0.0.1")
        for start in range(0, count, 1000):
            batch = [(s, GROUP, "up0", ["down0"], {}) for s in all_sources[start : start + 1000]]
            await call(bus, "AddRoutes", "a(sssasa{sv})a{sv}", [batch, {}])
        return time.perf_counter() - started
    finally:
        bus.disconnect()


async def cycles(address: str, count: int, in_flight: int = 32) -> float:
    bus = await MessageBus(bus_address=address).connect()
    transient = {"persistent": Variant("b", False)}
    pool = sources(in_flight, "10.200.0.1")

    async def one(source: str, rounds: int) -> None:
        for n in range(rounds):
            outputs = ["down0"] if n % 2 else ["down1"]
            await call(bus, "AddRoute", "sssasa{sv}", [source, GROUP, "up0", outputs, transient])
            await call(bus, "RemoveRoute", "ssa{sv}", [source, GROUP, {}])

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(s, count // in_flight) for s in pool))
        return time.perf_counter() - started
    finally:
        bus.disconnect()


def idle_rss(service: ServiceProcess) -> float:
    time.sleep(0.5)
    return service.rss_bytes() / MIB


def measure(routes: int, cycle_count: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mfc-memory-") as tmp:
        directory = Path(tmp)
        with Lab(downstreams=2) as lab, PrivateBus() as bus:
            with ServiceProcess(bus, lab, directory / "state.json",
                                directory / "mfc-dbusd.log") as service:  # fmt: skip
                rows = []
                start = idle_rss(service)
                rows.append({"phase": "after start", "rss_mib": start, "growth_mib": 0.0})
                seconds = asyncio.run(add_routes(bus.address, routes))
                loaded = idle_rss(service)
                rows.append({"phase": f"after {routes:,} routes", "rss_mib": loaded,
                             "growth_mib": loaded - start,
                             "calls_per_s": rate(routes, seconds)})  # fmt: skip
                seconds = asyncio.run(cycles(bus.address, cycle_count))
                warm = idle_rss(service)
                rows.append({"phase": f"after {cycle_count:,} add/remove cycles",
                             "rss_mib": warm, "growth_mib": warm - loaded,
                             "calls_per_s": rate(2 * cycle_count, seconds)})  # fmt: skip
                seconds = asyncio.run(cycles(bus.address, cycle_count))
                cycled = idle_rss(service)
                growth = cycled - warm
                rows.append({"phase": f"after {cycle_count:,} more cycles",
                             "rss_mib": cycled, "growth_mib": growth,
                             "calls_per_s": rate(2 * cycle_count, seconds),
                             "limit_mib": GROWTH_LIMIT_MIB,
                             "within_limit": growth < GROWTH_LIMIT_MIB})  # fmt: skip
                errors = service.unhandled()
                if errors:
                    raise RuntimeError(f"the service logged unhandled errors: {errors[:3]}")
                return rows


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        routes={"type": int, "default": 10_000, "help": "routes to hold (default 10,000)"},
        cycles={"type": int, "default": 10_000, "help": "add/remove cycles (default 10,000)"},
    )
    gc.collect()
    rows = measure(args.routes, args.cycles)
    columns = ["phase", "rss_mib", "growth_mib", "calls_per_s", "within_limit"]
    report("mfc-dbusd memory (RSS)", rows, columns, args.json)
    return 0 if rows[-1]["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
