"""ListRoutes: reading every row of 100,000 routes in pages (as `mfc-dbus route show`)
and one unpaged call on a table of 1,000 (as the concurrency test's clients make), this
tree against an older revision in the same run, interleaved.

The older revision (--old, default main) is taken with `git archive` into a temporary
directory; its mfc-dbusd and its client run from there, under the same interpreter.
Each round starts, for each version in turn, a fresh mfc-dbusd in the lab's router
namespace on a private bus (no state file) and:

- small_*: with --small routes held (half IPv4, half IPv6 exact routes), --calls
  unpaged ListRoutes calls one after another: the client's wait per call (median) and
  the CPU per call of the service (cpu), of dbus-daemon (bus) and of the client
  (client); a process's CPU is its threads' schedstat run time;
- list_s: with --routes routes held (exact IPv4, one group: bench/scale.py's shape),
  every row read through the client's route_pages (pages of 10,000), the best of
  --reads; list_cpu_s, list_bus_s, list_client_s the CPU of each process in it;
- show_s: `mfc-dbus route show` (the version's, from its interpreter's start) printing
  every row to /dev/null, the best of --reads;
- floor_s: `ip -j mroute show` (-4 and -6) dumping the same kernel table right after,
  the best of 3 (the floor).

The service is stopped (SIGTERM, by PID) after each version's turn. The load average
is printed with the figures.

    sudo .venv/bin/python bench/listing.py --rounds 3 --json bench/results/listing.json
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from common import parse_args, report

from mfc_dbus.client import MfcClient, RouteSpec
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess

REPO = Path(__file__).resolve().parents[1]
BATCH = 10_000
GROUP = "233.252.0.1"
FIRST_SOURCE = int(ipaddress.ip_address("10.0.0.1"))

# Run by the interpreter with the measured version first on sys.path: its client.
_CLIENT = r"""
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from dbus_fast import Variant
from mfc_dbus.client import MfcClient

address, what, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
service, bus = int(sys.argv[5]), int(sys.argv[6])


def run_time(pid: int) -> float:
    tasks = Path(f"/proc/{pid}/task")
    return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9


def cpu() -> tuple[float, float, float]:  # seconds so far: service, bus daemon, client
    return run_time(service), run_time(bus), time.process_time()


def used(before: tuple[float, float, float]) -> list[float]:
    return [now - then for now, then in zip(cpu(), before)]


async def small(client):
    waits = []
    before = cpu()
    for _ in range(count):
        started = time.perf_counter()
        (rows,) = await client.invoke("ListRoutes", {})
        waits.append(time.perf_counter() - started)
    return {"rows": len(rows), "waits": waits, "cpu": [t / count for t in used(before)]}


async def paged(client):
    best = None
    for _ in range(count):
        before, started, rows = cpu(), time.perf_counter(), 0
        async for page in client.route_pages():
            rows += len(page)
        seconds = time.perf_counter() - started
        if best is None or seconds < best["seconds"]:
            best = {"rows": rows, "seconds": seconds, "cpu": used(before)}
    return best


async def main():
    client = await MfcClient.connect(address, timeout=600)
    try:
        print(json.dumps(await (small if what == "small" else paged)(client)))
    finally:
        await client.close()


asyncio.run(main())
"""


class VersionedService(ServiceProcess):
    """mfc-dbusd from the source tree `tree` (its package first on sys.path)."""

    tree: Path = REPO

    def argv(self) -> list[str]:
        argv = super().argv()
        daemon = argv.index(str(Path(sys.executable).with_name("mfc-dbusd")))
        start = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                 "from mfc_dbus.service.daemon import main; sys.exit(main())")  # fmt: skip
        return [*argv[:daemon], sys.executable, "-c", start, str(self.tree), *argv[daemon + 1 :]]


def old_tree(revision: str, into: Path) -> Path:
    """The revision's files (git archive), without touching the repository's worktrees."""
    archive = into / "old.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive),
                    revision], check=True)  # fmt: skip
    tree = into / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree)  # our own archive of the repository
    return tree


def floor_read(lab: Lab) -> tuple[int, float]:
    """Rows and seconds of `ip -j mroute show` for both families (the read floor)."""
    rows, started = 0, time.perf_counter()
    for family in ("-4", "-6"):
        argv = ["ip", "netns", "exec", lab.rtr, "ip", family, "-j", "mroute", "show"]
        shown = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        rows += len(json.loads(shown or "[]"))
    return rows, time.perf_counter() - started


def spec(n: int, family: str) -> RouteSpec:
    if family == "ipv6":
        return RouteSpec(f"2001:db8:1::{n + 1:x}", "ff3e::db8:1", "up0", ("down0",))
    return RouteSpec(str(ipaddress.ip_address(FIRST_SOURCE + n)), GROUP, "up0", ("down0",))


async def fill(address: str, specs: list[RouteSpec]) -> None:
    client = await MfcClient.connect(address, timeout=600)
    try:
        for first in range(0, len(specs), BATCH):
            await client.add_routes(specs[first : first + BATCH])
    finally:
        await client.close()


def measure(tree: Path, bus: PrivateBus, service: ServiceProcess, what: str, count: int) -> dict:
    assert bus.process is not None
    argv = [sys.executable, "-c", _CLIENT, str(tree), bus.address, what, str(count),
            str(service.pid), str(bus.process.pid)]  # fmt: skip
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def route_show(tree: Path, bus: PrivateBus, reads: int) -> float:
    """Best seconds of `mfc-dbus route show` (the version's) printing every row to
    /dev/null, from the interpreter's start."""
    start = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); from mfc_dbus.cli import main; main()"
    )
    argv = [sys.executable, "-c", start, str(tree), "--address", bus.address, "route", "show"]
    best = None
    for _ in range(reads):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    assert best is not None
    return best


def turn(lab: Lab, bus: PrivateBus, directory: Path, tree: Path, args) -> dict:
    """One version's figures, on a fresh service."""
    half = args.small // 2
    small_specs = [spec(n, "ipv4") for n in range(half)]
    small_specs += [spec(n, "ipv6") for n in range(args.small - half)]
    # The large table's IPv4 routes continue after the small table's.
    large_specs = [spec(n, "ipv4") for n in range(half, args.routes - (args.small - half))]
    service = VersionedService(bus, lab, None, directory / "mfc-dbusd.log")
    service.tree = tree
    with service:
        asyncio.run(fill(bus.address, small_specs))
        small = measure(tree, bus, service, "small", args.calls)
        asyncio.run(fill(bus.address, large_specs))
        paged = measure(tree, bus, service, "paged", args.reads)
        show_s = route_show(tree, bus, args.reads)
        floor_rows, floor_s = min((floor_read(lab) for _ in range(3)), key=lambda f: f[1])
        errors = service.unhandled()
        service.stop(timeout=600)
    if errors:
        raise RuntimeError(f"the service logged unhandled errors: {errors[:3]}")
    if paged["rows"] != args.routes or floor_rows != args.routes:
        raise RuntimeError(f"read {paged['rows']} rows, the kernel {floor_rows}, of {args.routes}")
    return {
        "small_rows": small["rows"],
        "small_wait_ms": statistics.median(small["waits"]) * 1000,
        "small_cpu_ms": small["cpu"][0] * 1000,
        "small_bus_ms": small["cpu"][1] * 1000,
        "small_client_ms": small["cpu"][2] * 1000,
        "list_s": paged["seconds"],
        "list_cpu_s": paged["cpu"][0],
        "list_bus_s": paged["cpu"][1],
        "list_client_s": paged["cpu"][2],
        "show_s": show_s,
        "floor_s": floor_s,
        "list_vs_floor": paged["seconds"] / floor_s,
        "show_vs_floor": show_s / floor_s,
        "load": os.getloadavg()[0],
    }


def ranges(rows: list[dict], version: str, keys: list[str]) -> dict:
    mine = [row for row in rows if row["version"] == version]
    out: dict = {"version": version, "round": "range"}
    for key in keys:
        values = [row[key] for row in mine]
        out[key] = f"{_short(min(values))}-{_short(max(values))}"
    return out


def _short(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        old={"default": "main", "help": "the revision to compare with (default main)"},
        routes={"type": int, "default": 100_000, "help": "routes read in pages"},
        small={"type": int, "default": 1_000, "help": "routes of the unpaged calls' table"},
        calls={"type": int, "default": 50, "help": "unpaged calls per turn"},
        reads={"type": int, "default": 2, "help": "paged reads per turn (the best counts)"},
        rounds={"type": int, "default": 2, "help": "rounds of old then new"},
    )  # fmt: skip
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mfc-listing-") as tmp:
        directory = Path(tmp)
        versions: dict[str, Path] = {args.old: old_tree(args.old, directory), "this": REPO}
        with Lab(downstreams=1) as lab, PrivateBus() as bus:
            for n in range(args.rounds):
                for name, tree in versions.items():
                    rows.append({"version": name, "round": n + 1,
                                 **turn(lab, bus, directory, tree, args)})  # fmt: skip
                    print(f"  round {n + 1}, {name}: done", flush=True)
    keys = ["small_wait_ms", "small_cpu_ms", "small_bus_ms", "small_client_ms", "list_s",
            "list_cpu_s", "list_bus_s", "list_client_s", "show_s", "floor_s", "list_vs_floor",
            "show_vs_floor", "load"]  # fmt: skip
    summary = [ranges(rows, name, keys) for name in (args.old, "this")]
    report(f"ListRoutes, {args.routes:,} routes paged and {args.small:,} unpaged "
           f"(python {sys.version.split()[0]}, dbus-fast {_dbus_fast()})",
           rows + summary, ["version", "round", "small_rows", *keys], args.json)  # fmt: skip
    return 0


def _dbus_fast() -> str:
    try:
        return version("dbus-fast")
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
