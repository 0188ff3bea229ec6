"""bench/dbus.py on each supported dbus-fast: 1.84 (Debian 12), 2.44 (Debian 13), newest 5.x.

Each version gets a venv of its own, cached under /var/tmp/mfc-dbus-bench-venvs/<version>,
made with the same Python as .venv and holding that dbus-fast, .venv's own cffi and
pyroute2 (so only dbus-fast differs) and this tree installed editable without
dependencies (reinstalled every run, so the tree being benched is the one measured).
Then Debian's python3-dbus-fast through .venv-debian (`make setup`: /usr/bin/python3
with the distribution's own packages), whose build, Python and pyroute2 differ from
the PyPI wheel's. bench/dbus.py runs once per version, one after the other (never two
benches at once), each with its floors measured in the same run; the ratios are the
targets of issue 12. --rounds N runs every version N times, in turn (the machine is
shared: each version then sees the same spells of load); each figure is the best.

The "compiled" column says whether dbus-fast's Cython modules load: PyPI's 1.84.2
wheel tagged cp311 carries cpython-310 extensions, so on Python 3.11 pip's 1.84.2 is
pure Python; Debian 12's python3-dbus-fast 1.84.2 is compiled.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parse_args, report

ROOT = Path(__file__).resolve().parent.parent
VENVS = Path("/var/tmp/mfc-dbus-bench-venvs")
DEFAULT_SPECS = ["1.84.2", "2.44.*", "5.*"]
DEBIAN_VENV = ROOT / ".venv-debian"

# bench/dbus.py's rows, and the ratios issue 12 asks for: (figure, floor, target).
PING = "D-Bus Peer.Ping floor (calls/s)"
ROOT_SEQ = "root sequential AddRoute"
POLKIT = "polkit CheckAuthorization floor for the user (calls/s)"
USER_SEQ = "authorized user sequential AddRoute"
IN_FLIGHT = "root AddRoute, 100 in flight"
BATCH = "root AddRoutes batch"
SMCROUTE_BATCH = re.compile(r"smcroutectl -b batch of \d+")
ROOT_TARGET, USER_TARGET, BATCH_TARGET = 0.6, 0.85, 30.0


def run(command: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, **kw)


def base_python() -> str:
    """The interpreter .venv was made from (this script runs in .venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def installed(python: str, distribution: str) -> str | None:
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m, sys\n"
         "try: print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError: pass",
         distribution],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return out or None


def resolve(spec: str) -> str:
    """The version pip would install for dbus-fast==spec (one index query); offline,
    the newest venv already cached for it."""
    if "*" not in spec:
        return spec
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps",
             "--ignore-installed", "--report", "-", f"dbus-fast=={spec}"],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        return json.loads(out)["install"][0]["metadata"]["version"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        prefix = spec.rstrip("*")
        cached = sorted(
            (p.name for p in VENVS.glob(f"{prefix}*") if (p / "bin" / "python").exists()),
            key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)),
        )
        if not cached:
            raise SystemExit(f"cannot resolve dbus-fast=={spec}, none cached: {exc}") from exc
        print(f"versions: cannot ask the index for {spec} ({exc}); using cached {cached[-1]}")
        return cached[-1]


def venv_for(version: str, pins: dict[str, str], refresh: bool) -> Path:
    """A venv with dbus-fast==version and the pinned other dependencies (cached)."""
    venv = VENVS / version
    python = str(venv / "bin" / "python")
    stamp = venv / ".mfc-bench"
    wanted = json.dumps({"base": base_python(), "dbus-fast": version, **pins}, sort_keys=True)
    if refresh or not stamp.exists() or stamp.read_text() != wanted:
        print(f"versions: making {venv}")
        run([base_python(), "-m", "venv", "--clear", str(venv)])
        run([python, "-m", "pip", "install", "-q", "--upgrade", "pip", "setuptools>=66"])
        run([python, "-m", "pip", "install", "-q", f"dbus-fast=={version}",
             *(f"{name}=={v}" for name, v in pins.items())])  # fmt: skip
        stamp.write_text(wanted)
    # This tree, editable and without dependencies: what is measured is what is checked out.
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
         str(ROOT)], stdout=subprocess.DEVNULL)  # fmt: skip
    return venv


def debian_differs(pypi_184: Path | None) -> bool:
    """Debian's python3-dbus-fast is its own build (Debian's Cython, /usr/bin/python3,
    with Debian's pyroute2 and cffi beside it): measured unless it is the same files."""
    if not (DEBIAN_VENV / "bin" / "python").exists():
        print("versions: no .venv-debian (run `make setup`); Debian's dbus-fast skipped")
        return False
    if pypi_184 is None:
        return True
    where = "import dbus_fast, os; print(os.path.realpath(dbus_fast.__file__))"
    paths = [
        subprocess.run([str(p / "bin" / "python"), "-c", where], capture_output=True,
                       text=True, check=True).stdout.strip()
        for p in (DEBIAN_VENV, pypi_184)
    ]  # fmt: skip
    return paths[0] != paths[1]


def bench(label: str, python: Path, extra: list[str], out: Path) -> dict:
    """One run of bench/dbus.py; its figures by name, with the load it ran under."""
    load = os.getloadavg()[0]
    print(f"\n== dbus-fast {label} ({python}); load average {load:.2f}", flush=True)
    start = time.monotonic()
    run([str(python), str(ROOT / "bench" / "dbus.py"), "--json", str(out), *extra], cwd=ROOT)
    rows = json.loads(out.read_text())["results"]
    return {
        "figures": {row["what"]: row["per_s"] for row in rows if "per_s" in row},
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - start, 1),
    }


def probe(python: Path) -> tuple[str, bool]:
    """The interpreter's version, and whether dbus-fast's Cython modules load: PyPI's
    1.84.2 wheel for cp311 carries cpython-310 extensions, so 3.11 runs it as pure Python."""
    out = subprocess.run(
        [str(python), "-c", "import platform, dbus_fast.message as m\n"
         "print(platform.python_version(), m.__file__.endswith('.so'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return out[0], out[1] == "True"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def summarize(label: str, python: str, compiled: bool, rounds: list[dict]) -> dict:
    """Each figure is the best over the rounds (as in bench/dbus.py: noise only slows);
    the ratios are of those bests. Every round's own figures go to the JSON."""
    f: dict[str, float] = {}
    for result in rounds:
        for what, value in result["figures"].items():
            f[what] = max(f.get(what, 0.0), value)
    smcroute = next((v for k, v in f.items() if SMCROUTE_BATCH.fullmatch(k)), None)
    row = {
        "dbus-fast": label,
        "python": python,
        "compiled": compiled,
        "ping/s": f.get(PING),
        "root/s": f.get(ROOT_SEQ),
        "root÷ping": ratio(f.get(ROOT_SEQ), f.get(PING)),
        "polkit/s": f.get(POLKIT),
        "user/s": f.get(USER_SEQ),
        "user÷polkit": ratio(f.get(USER_SEQ), f.get(POLKIT)),
        "100 in flight/s": f.get(IN_FLIGHT),
        "AddRoutes/s": f.get(BATCH),
        "smcroutectl -b/s": smcroute,
        "AddRoutes÷smcroute": ratio(f.get(BATCH), smcroute),
        "load": " ".join(f"{r['load_before']:.1f}" for r in rounds),
    }
    row["meets"] = " ".join(
        f"{name}:{'yes' if value is not None and value >= target else 'NO'}"
        for name, value, target in (
            ("root", row["root÷ping"], ROOT_TARGET),
            ("user", row["user÷polkit"], USER_TARGET),
            ("batch", row["AddRoutes÷smcroute"], BATCH_TARGET),
        )
    )
    row["figures"] = f
    row["rounds"] = rounds
    return row


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        versions={"nargs": "+", "default": DEFAULT_SPECS,
                  "help": "dbus-fast versions, * allowed (default: 1.84.2 2.44.* 5.*)"},
        debian={"choices": ["auto", "yes", "no"], "default": "auto",
                "help": "also Debian's python3-dbus-fast via .venv-debian (auto: if present "
                        "and not the same files as PyPI's 1.84.2)"},
        bench_args={"default": "", "help": "passed to bench/dbus.py, e.g. '--repeats 5'"},
        rounds={"type": int, "default": 1,
                "help": "runs of every version, in turn; each figure is the best (1)"},
        refresh={"action": "store_true", "help": "remake the cached venvs"},
    )  # fmt: skip
    pins = {name: installed(sys.executable, name) for name in ("cffi", "pyroute2")}
    pins = {name: version for name, version in pins.items() if version}
    extra = shlex.split(args.bench_args)
    versions = [resolve(spec) for spec in args.versions]
    print(f"versions: dbus-fast {', '.join(versions)}; with {pins}; python {base_python()}")
    venvs = {version: venv_for(version, pins, args.refresh) for version in versions}
    runs: list[tuple[str, Path]] = [
        (f"{version} (PyPI)", venvs[version] / "bin" / "python") for version in versions
    ]
    if args.debian == "yes" or (args.debian == "auto" and debian_differs(venvs.get("1.84.2"))):
        debian_version = installed(str(DEBIAN_VENV / "bin" / "python"), "dbus-fast")
        runs.append((f"{debian_version} (Debian)", DEBIAN_VENV / "bin" / "python"))
    results: dict[str, list[dict]] = {label: [] for label, _ in runs}
    with tempfile.TemporaryDirectory(prefix="mfc-bench-versions-") as tmp:
        for n in range(args.rounds):  # versions in turn, so each sees the same spells of load
            for label, python in runs:
                out = Path(tmp) / f"{n}-{re.sub(r'[^A-Za-z0-9.]+', '-', label)}.json"
                results[label].append(bench(label, python, extra, out))
    rows = [summarize(label, *probe(python), results[label]) for label, python in runs]
    print()
    report(
        "dbus-fast versions: bench/dbus.py per version, floors in the same run "
        f"(targets: root >= {ROOT_TARGET}x ping, user >= {USER_TARGET}x polkit, "
        f"AddRoutes >= {BATCH_TARGET:.0f}x smcroutectl -b)",
        rows,
        ["dbus-fast", "python", "compiled", "ping/s", "root/s", "root÷ping", "polkit/s", "user/s",
         "user÷polkit", "100 in flight/s", "AddRoutes/s", "smcroutectl -b/s",
         "AddRoutes÷smcroute", "load", "meets"],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
