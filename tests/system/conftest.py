"""Fixtures of the real-systemd system tests (`make system-test`, marker `system`).

One container per Debian suite serves every test of the suite (pytest groups the
tests by the session fixture's parameter and shuts one container down before the
next boots). The .deb comes from `make deb` in this checkout, built once per run
(or MFC_SYSTEST_DEB=/path/to/mfc-dbus_X_all.deb). The root filesystems come from
scripts/rootfs.sh (cached under /var/tmp/mfc-dbus-rootfs).

MFC_SYSTEST_SUITES=bookworm (space or comma separated) limits the suites.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .container import Container, sweep_stale
from .flows import PAYLOAD_DIR
from .host import REPO, SUITES, require_host, rootfs_tarball
from .system import DebianSystem

PAYLOAD = Path(__file__).resolve().parent / "payload"

# Figures measured by the tests, printed at the end of the run (and written as JSON to
# MFC_SYSTEST_JSON when set).
FIGURES: dict[str, dict[str, object]] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("system test figures")
    for suite, figures in FIGURES.items():
        for key, value in figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            terminalreporter.write_line(f"{suite:10} {key:40} {shown}")
    target = os.environ.get("MFC_SYSTEST_JSON")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")


def record(suite: str, key: str, value: object) -> None:
    FIGURES.setdefault(suite, {})[key] = value


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_containers() -> None:
    """What a killed earlier run left behind (never a live run's containers)."""
    if os.geteuid() == 0:
        removed = sweep_stale()
        if removed:
            FIGURES.setdefault("host", {})["stale containers removed"] = len(removed)


def _make_deb(out: Path, version: str | None = None) -> Path:
    """`make deb` of this checkout into `out` (as `version` if given: DEB_VERSION)."""
    env = {**os.environ, "DEB_VERSION": version} if version else None
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "deb", f"DEB_OUTDIR={out}"],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        pytest.fail(f"`make deb` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    # scripts/build-deb.sh prints the .deb's path on its last line.
    lines = done.stdout.strip().splitlines()
    built = Path(lines[-1]) if lines else None
    if built is None or built.parent != out or not built.is_file():
        pytest.fail(f"`make deb` made no .deb in {out}:\n{done.stdout}{done.stderr}")
    return built


def deb_version(path: Path) -> str:
    """The version in a .deb's file name (mfc-dbus_VERSION_all.deb)."""
    return path.name.split("_")[1]


@pytest.fixture(scope="session")
def deb() -> Iterator[Path]:
    """The package under test: `make deb` in this checkout, once per run."""
    require_host()
    given = os.environ.get("MFC_SYSTEST_DEB")
    if given:
        yield Path(given)
        return
    out = Path(tempfile.mkdtemp(prefix="mfc-dbus-systest-deb-", dir="/var/tmp"))
    try:
        started = time.monotonic()
        built = _make_deb(out)
        FIGURES.setdefault("host", {})["make deb, s"] = time.monotonic() - started
        yield built
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def newer_deb(deb: Path) -> Iterator[Path]:
    """The same tree as a higher version (VERSION+systest1; DEB_VERSION of
    scripts/build-deb.sh, nothing committed), for upgrade tests; once per run, and only
    when a test asks. MFC_SYSTEST_NEWER_DEB=/path/to/newer.deb gives one."""
    given = os.environ.get("MFC_SYSTEST_NEWER_DEB")
    if given:
        yield Path(given)
        return
    out = Path(tempfile.mkdtemp(prefix="mfc-dbus-systest-newer-deb-", dir="/var/tmp"))
    try:
        started = time.monotonic()
        built = _make_deb(out, f"{deb_version(deb)}+systest1")
        FIGURES.setdefault("host", {})["make deb (newer version), s"] = time.monotonic() - started
        yield built
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session", params=SUITES)
def debian(request, deb: Path) -> Iterator[DebianSystem]:
    """A booted Debian `suite` with the .deb installed by apt (offline)."""
    suite = request.param
    started = time.monotonic()
    tarball = rootfs_tarball(suite)
    record(suite, "rootfs (cache hit or build), s", time.monotonic() - started)
    with Container(suite, tarball) as container:
        for path in sorted(PAYLOAD.iterdir()):
            if path.is_file():
                container.write(f"{PAYLOAD_DIR}/{path.name}", path.read_bytes(), 0o755)
        container.write(f"{PAYLOAD_DIR}/{deb.name}", deb.read_bytes())
        system = DebianSystem(container, lambda k, v: record(suite, k, v))
        started = time.monotonic()
        installed = container.run(
            ["apt-get", "install", "-y", f"{PAYLOAD_DIR}/{deb.name}"],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            check=False,
            timeout=300,
        )
        system.install_output = installed.stdout + installed.stderr
        system.installed = installed.returncode == 0
        record(suite, "apt-get install ./deb, s", time.monotonic() - started)
        for key, value in container.timings.items():
            record(suite, f"container {key}, s", value)
        try:
            yield system
        finally:
            for key, value in container.timings.items():
                record(suite, f"container {key}, s", value)
