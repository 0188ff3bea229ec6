"""Scale: the service holding 10k, 100k, 300k and 1M routes (up to --max): at each step
the AddRoutes rate, one AddRoute/RemoveRoute, ListRoutes of every row, RSS, restart.

The real mfc-dbusd runs in the lab's router namespace on a private bus with a state
file; routes arrive over D-Bus in AddRoutes batches of 10,000 (exact IPv4 routes,
one group, one source each). At each step, with that many routes held:

- add_per_s: the rate of the step's last AddRoutes batch, and first_add_per_s that of
  the very first batch (the table empty), for the ratio;
- add_ms / remove_ms: median of one transient AddRoute and its RemoveRoute (50 each);
- list_s: every row read through ListRoutes pages of 10,000 (the client's route_pages),
  first_page_s the first page alone (when `route show` starts printing); floor_s: `ip -j
  mroute show` dumping the same kernel table in the same run (the read floor);
- ioctl_s / dump_s: the counters of every entry by one SIOCGETSGCNT each on a reused
  request (ListRoutes' way) and by one rtnetlink dump, read from a raw socket of our own;
- rss_mib and rss_per_route_b: VmRSS of the service;
- restart_s: SIGTERM (the kernel table is flushed) and a fresh start restoring the
  state file, until the bus name is owned. The adoption of a kept kernel table is
  bench/restart.py's.

    sudo .venv/bin/python bench/scale.py --max 1000000 --json bench/results/scale.json

A PNG plot is written beside the JSON when matplotlib is importable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parse_args, rate, report

from mfc_dbus.client import MfcClient, RouteSpec
from mfc_dbus.kernel.mfcdump import dump_raw
from mfc_dbus.kernel.sgcounters import read_sg_counters
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess

MIB = 1024 * 1024
STEPS = (10_000, 100_000, 300_000, 1_000_000)
BATCH = 10_000
GROUP = "233.252.0.1"
FIRST_SOURCE = int(ipaddress.ip_address("10.0.0.1"))
SINGLE_CALLS = 50


def source(n: int) -> str:
    return str(ipaddress.ip_address(FIRST_SOURCE + n))


async def fill(client: MfcClient, held: int, target: int) -> list[float]:
    """Add routes held..target in batches; the rate of each batch."""
    rates = []
    for first in range(held, target, BATCH):
        count = min(BATCH, target - first)
        batch = [
            RouteSpec(source(n), GROUP, "up0", ("down0",)) for n in range(first, first + count)
        ]
        started = time.perf_counter()
        await client.add_routes(batch)
        rates.append(rate(count, time.perf_counter() - started))
    return rates


async def single_calls(client: MfcClient) -> tuple[float, float]:
    """Median seconds of one AddRoute and of one RemoveRoute (transient routes)."""
    adds, removes = [], []
    for n in range(SINGLE_CALLS):
        address = str(ipaddress.ip_address("10.250.0.1") + n)
        started = time.perf_counter()
        await client.add_route(address, GROUP, "up0", ["down0"], persistent=False)
        adds.append(time.perf_counter() - started)
        started = time.perf_counter()
        await client.remove_route(address, GROUP)
        removes.append(time.perf_counter() - started)
    return statistics.median(adds), statistics.median(removes)


async def list_all(client: MfcClient) -> tuple[int, float, float]:
    """Rows read, seconds to the first page, seconds to the last."""
    started = time.perf_counter()
    first = None
    rows = 0
    async for page in client.route_pages():
        first = first if first is not None else time.perf_counter() - started
        rows += len(page)
    return rows, first or 0.0, time.perf_counter() - started


def floor_read(lab: Lab) -> tuple[int, float]:
    started = time.perf_counter()
    shown = subprocess.run(["ip", "netns", "exec", lab.rtr, "ip", "-j", "mroute", "show"],
                           check=True, capture_output=True, text=True).stdout  # fmt: skip
    seconds = time.perf_counter() - started
    return len(json.loads(shown or "[]")), seconds


def counter_reads(lab: Lab) -> tuple[float, float]:
    """Seconds to read every entry's counters by ioctl (a raw IGMP socket needs no
    MRT_INIT for SIOCGETSGCNT) and by one rtnetlink dump."""
    with in_netns(lab.rtr):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    with raw:
        with in_netns(lab.rtr):
            started = time.perf_counter()
            entries = dump_raw(Family.IPV4)
            dump = time.perf_counter() - started
        pairs = [(entry[1], entry[2]) for entry in entries]
        started = time.perf_counter()
        read_sg_counters(Family.IPV4, raw.fileno(), pairs)
        return time.perf_counter() - started, dump


def step(lab: Lab, bus: PrivateBus, service: ServiceProcess, held: int, target: int,
         first_rate: list[float]) -> dict:  # fmt: skip

    async def calls():
        client = await MfcClient.connect(bus.address, timeout=600)
        try:
            rates = await fill(client, held, target)
            single = await single_calls(client)
            listed = await list_all(client)
            return rates, single, listed
        finally:
            await client.close()

    rates, (add_s, remove_s), (rows, first_page_s, list_s) = asyncio.run(calls())
    if not first_rate:
        first_rate.append(rates[0])
    if rows != target:
        raise RuntimeError(f"ListRoutes read {rows} rows with {target} routes held")
    time.sleep(0.5)  # idle before reading RSS
    rss = service.rss_bytes()
    floor_rows, floor_s = floor_read(lab)
    ioctl_s, dump_s = counter_reads(lab)
    service.stop(timeout=600)
    started = time.perf_counter()
    service.start(timeout=600)
    restart_s = time.perf_counter() - started
    return {
        "routes": target,
        "first_add_per_s": first_rate[0],
        "add_per_s": rates[-1],
        "add_vs_first": rates[-1] / first_rate[0],
        "add_ms": add_s * 1000,
        "remove_ms": remove_s * 1000,
        "first_page_s": first_page_s,
        "list_s": list_s,
        "floor_s": floor_s,
        "list_vs_floor": list_s / floor_s,
        "floor_rows": floor_rows,
        "ioctl_s": ioctl_s,
        "dump_s": dump_s,
        "rss_mib": rss / MIB,
        "rss_per_route_b": rss / target,
        "restart_s": restart_s,
    }


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not importable: no plot written")
        return
    routes = [row["routes"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(routes, [row["add_per_s"] for row in rows], marker="o")
    axes[0].set(title="AddRoutes batch of 10,000", ylabel="routes/s")
    for key, label in (
        ("list_s", "ListRoutes, paged"),
        ("floor_s", "ip -j mroute show"),
        ("ioctl_s", "counters: ioctl each"),
        ("dump_s", "counters: one dump"),
    ):
        axes[1].plot(routes, [row[key] for row in rows], marker="o", label=label)  # fmt: skip
    axes[1].set(title="reading every route", ylabel="s")
    axes[1].legend()
    axes[2].plot(routes, [row["rss_per_route_b"] for row in rows], marker="o")
    axes[2].set(title="RSS per route held", ylabel="bytes")
    for ax in axes:
        ax.set(xscale="log", xlabel="routes held")
    figure.tight_layout()
    figure.savefig(path)
    print(f"wrote {path}")


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        max={"type": int, "default": 100_000, "help": "routes held at the last step "
             "(steps 10k, 100k, 300k, 1M up to it; default 100,000)"},
    )  # fmt: skip
    targets = [n for n in STEPS if n <= args.max] or [args.max]
    rows: list[dict] = []
    first_rate: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mfc-scale-") as tmp:
        directory = Path(tmp)
        with Lab(downstreams=1) as lab, PrivateBus() as bus:
            with ServiceProcess(bus, lab, directory / "state.json",
                                directory / "mfc-dbusd.log") as service:  # fmt: skip
                held = 0
                for target in targets:
                    rows.append(step(lab, bus, service, held, target, first_rate))
                    held = target
                    print(f"  {target:,} routes: done", flush=True)
                errors = service.unhandled()
                if errors:
                    raise RuntimeError(f"the service logged unhandled errors: {errors[:3]}")
    columns = ["routes", "add_per_s", "add_vs_first", "add_ms", "remove_ms", "first_page_s",
               "list_s", "floor_s", "list_vs_floor", "ioctl_s", "dump_s", "rss_mib",
               "rss_per_route_b", "restart_s"]  # fmt: skip
    report("mfc-dbusd at scale", rows, columns, args.json)
    if args.json is not None:
        plot(rows, args.json.with_suffix(".png"))
    else:
        plot(rows, Path(tempfile.gettempdir()) / "mfc-scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
