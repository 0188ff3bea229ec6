"""`make deb`: the package a Debian administrator installs, checked with dpkg-deb and
lintian only (never installed on this machine), and its maintainer scripts run against
stand-ins for systemd, the bus and dpkg's helpers."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mfc_dbus
from mfc_lab.bus import REPO_ROOT

PACKAGE = "mfc-dbus"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
DEB_NAME = f"{PACKAGE}_{VERSION}_all.deb"
UNIT = "mfc-dbus.service"
# What Debian 12 ships (the oldest supported release): the package must install there.
BOOKWORM = {"python3-dbus-fast": "1.84.2-1", "python3-pyroute2": "0.7.2-2",
            "python3-cffi": "1.15.1-5", "polkitd": "122-3"}  # fmt: skip

DATA_FILES = [
    "usr/share/dbus-1/system.d/org.mfc.Forwarding1.conf",
    "usr/share/dbus-1/system-services/org.mfc.Forwarding1.service",
    "usr/share/dbus-1/interfaces/org.mfc.Forwarding1.xml",
    "usr/share/polkit-1/actions/org.mfc.Forwarding1.policy",
    "usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules",
    "usr/share/doc/mfc-dbus/dbus-api.md.gz",
    "usr/share/doc/mfc-dbus/copyright",
    "usr/share/man/man1/mfc-dbus.1.gz",
    "usr/share/man/man8/mfc-dbusd.8.gz",
    "usr/share/bash-completion/completions/mfc-dbus",
]


def test_one_version() -> None:
    """pyproject.toml is the version; debian/changelog, the package and the man pages
    repeat it (build-deb.sh refuses to build when the changelog differs)."""
    changelog = (REPO_ROOT / "debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"{PACKAGE} ({VERSION}) "), changelog
    assert mfc_dbus.__version__ == VERSION
    for page in (REPO_ROOT / "man").iterdir():
        assert f'"mfc-dbus {VERSION}"' in page.read_text().splitlines()[0], page


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make deb` once per session, into a temporary directory (about 4 s)."""
    if shutil.which("dpkg-checkbuilddeps") is None and os.geteuid() != 0:
        pytest.skip("needs dpkg-dev, or root to install it")
    if os.geteuid() != 0:
        missing = subprocess.run(["dpkg-checkbuilddeps"], cwd=REPO_ROOT, capture_output=True)
        if missing.returncode != 0:
            pytest.skip(f"needs root to install build dependencies: {missing.stderr!r}")
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        ["make", "-s", "deb"], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "DEB_OUTDIR": str(out)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    path = out / DEB_NAME
    assert result.stdout.strip().splitlines()[-1] == str(path)
    assert path.is_file()
    return path


@dataclass(frozen=True)
class Entry:
    mode: int
    content: bytes  # empty for directories and links


@pytest.fixture(scope="session")
def files(deb: Path) -> dict[str, Entry]:
    """The package's file system, by path without the leading './'."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    assert data.returncode == 0, data.stderr
    entries = {}
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        for member in tar.getmembers():
            content = tar.extractfile(member).read() if member.isfile() else b""
            entries[member.name.removeprefix("./").rstrip("/")] = Entry(member.mode, content)
    return entries


def _unit_path(files: dict[str, Entry]) -> str:
    """Where dh_installsystemd put the unit: /lib on Debian 12, /usr/lib from 13."""
    found = [p for p in files if p.endswith(f"lib/systemd/system/{UNIT}")]
    assert len(found) == 1 and found[0] in (
        f"lib/systemd/system/{UNIT}", f"usr/lib/systemd/system/{UNIT}",
    ), found  # fmt: skip
    return found[0]


def test_file_list(files: dict[str, Entry]) -> None:
    for command in ("usr/bin/mfc-dbusd", "usr/bin/mfc-dbus"):
        assert command in files and files[command].mode & stat.S_IXUSR, command
        assert files[command].content.startswith(b"#!/usr/bin/python3\n")
    assert "usr/lib/python3/dist-packages/mfc_dbus/service/daemon.py" in files
    assert "usr/lib/python3/dist-packages/mfc_dbus/kernel/abi.py" in files
    assert not [p for p in files if "/lab" in p], "the lab is test code, never shipped"
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in files if p.startswith(("usr/local", "usr/lib/python3."))]
    missing = [p for p in DATA_FILES if p not in files]
    assert not missing
    assert _unit_path(files)
    for path in DATA_FILES:
        assert files[path].mode & 0o777 == 0o644, path


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_control_fields(deb: Path) -> None:
    assert _field(deb, "Package") == PACKAGE and _field(deb, "Version") == VERSION
    assert _field(deb, "Architecture") == "all"
    depends = [alt.strip() for alt in _field(deb, "Depends").split(",")]
    names = {re.sub(r"\s*\(.*?\)", "", d) for d in depends}
    for needed in ("python3-dbus-fast", "python3-pyroute2", "python3-cffi", "polkitd",
                   "default-dbus-system-bus | dbus-system-bus"):  # fmt: skip
        assert needed in names, (needed, depends)
    assert "python3:any" in names or "python3" in names, depends
    # Every version constraint on a library must hold for what Debian 12 ships.
    for dep in depends:
        match = re.fullmatch(r"(\S+) \((<<|<=|=|>=|>>) (\S+)\)", dep)
        if match and match[1] in BOOKWORM:
            op = {"<<": "lt", "<=": "le", "=": "eq", ">=": "ge", ">>": "gt"}[match[2]]
            ok = subprocess.run(["dpkg", "--compare-versions", BOOKWORM[match[1]], op, match[3]])
            assert ok.returncode == 0, f"{dep} excludes Debian 12's {BOOKWORM[match[1]]}"


def test_unit_runs_the_packaged_binary(files: dict[str, Entry]) -> None:
    unit = files[_unit_path(files)].content.decode()
    execstart = re.search(r"^ExecStart=(\S+)", unit, re.M)[1]
    assert execstart == "/usr/bin/mfc-dbusd" and execstart.lstrip("/") in files
    assert re.search(r"^After=.*\bdbus\.service\b", unit, re.M)
    docs = re.search(r"^Documentation=(.*)$", unit, re.M)[1].split()
    for doc in docs:
        page = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc)
        assert page, f"{doc}: Documentation= must name installed man pages"
        assert f"usr/share/man/man{page[2]}/{page[1]}.{page[2]}.gz" in files, doc
    activation = files["usr/share/dbus-1/system-services/org.mfc.Forwarding1.service"]
    assert f"SystemdService={UNIT}" in activation.content.decode()


@pytest.mark.skipif(shutil.which("lintian") is None, reason="needs lintian")
def test_lintian_no_errors(deb: Path) -> None:
    result = subprocess.run(["lintian", str(deb)], capture_output=True, text=True)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert not errors, result.stdout


# --- maintainer scripts, run against stand-ins --------------------------------------

STUBBED = ["deb-systemd-helper", "deb-systemd-invoke", "systemctl", "py3compile",
           "pypy3compile", "py3clean", "dbus-send", "busctl", "dpkg"]  # fmt: skip


class Scripts:
    """The package's postinst/prerm/postrm with every system path they test moved into
    a temporary directory and every command that acts on the system replaced by a
    stand-in that only logs its arguments. Nothing reaches this machine's systemd, bus
    or /var/lib."""

    def __init__(self, deb: Path, root: Path) -> None:
        self.root = root
        control = root / "control"
        subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
        self.systemd = root / "run-systemd-system"
        self.bus = root / "system_bus_socket"
        self.state = root / "var-lib-mfc-dbus"
        stubs = root / "bin"
        stubs.mkdir()
        self.log = root / "log"
        for name in STUBBED:
            stub = stubs / name
            stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\n')
            stub.chmod(0o755)
        self.path = f"{stubs}:/usr/bin:/bin"
        self.scripts: dict[str, Path] = {}
        for name in ("postinst", "prerm", "postrm"):
            text = (control / name).read_text()
            text = (text.replace("/run/systemd/system", str(self.systemd))
                    .replace("/run/dbus/system_bus_socket", str(self.bus))
                    .replace("/var/lib/mfc-dbus", str(self.state)))  # fmt: skip
            assert "/run/" not in text and "/var/lib" not in text, (name, text)
            script = root / name
            script.write_text(text)
            self.scripts[name] = script

    def systemd_running(self, bus: bool = True) -> None:
        self.systemd.mkdir()
        if bus:
            self._sock = socket.socket(socket.AF_UNIX)
            self._sock.bind(str(self.bus))

    def run(self, name: str, *args: str) -> list[str]:
        self.log.unlink(missing_ok=True)
        env = {"PATH": self.path, "LC_ALL": "C.UTF-8"}
        result = subprocess.run(
            ["sh", "-e", str(self.scripts[name]), *args], env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        assert result.returncode == 0, (name, args, result.stderr)
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def scripts(deb: Path, tmp_path: Path) -> Iterator[Scripts]:
    yield Scripts(deb, tmp_path)


def _index(log: list[str], prefix: str) -> int:
    found = [i for i, line in enumerate(log) if line.startswith(prefix)]
    assert found, (prefix, log)
    return found[0]


def test_install_enables_reloads_the_bus_then_starts(scripts: Scripts) -> None:
    scripts.systemd_running()
    log = scripts.run("postinst", "configure", "")
    assert "deb-systemd-helper enable mfc-dbus.service" in log
    reload = _index(log, "dbus-send --system --print-reply")
    assert "org.freedesktop.DBus.ReloadConfig" in log[reload]
    assert _index(log, "deb-systemd-invoke start mfc-dbus.service") > reload
    assert not [line for line in log if "stop" in line or "restart" in line], log


def test_upgrade_restarts_never_stops(scripts: Scripts) -> None:
    scripts.systemd_running()
    assert not [line for line in scripts.run("prerm", "upgrade", VERSION) if "stop" in line]
    log = scripts.run("postinst", "configure", "0.0.1")
    assert not [line for line in log if "stop" in line], log
    assert _index(log, "deb-systemd-invoke restart mfc-dbus.service") > _index(
        log, "dbus-send --system --print-reply"
    )


def test_install_without_systemd_or_bus_succeeds(scripts: Scripts) -> None:
    """A chroot, a container build, a machine without systemd: nothing to start."""
    log = scripts.run("postinst", "configure", "")
    assert "deb-systemd-helper enable mfc-dbus.service" in log
    assert not [line for line in log if line.startswith(("deb-systemd-invoke", "dbus-send"))]


def test_remove_stops_and_purge_removes_the_state(scripts: Scripts) -> None:
    scripts.systemd_running()
    assert "deb-systemd-invoke stop mfc-dbus.service" in scripts.run("prerm", "remove")
    scripts.state.mkdir()
    (scripts.state / "state.json").write_text("{}")
    scripts.run("postrm", "remove")
    assert scripts.state.exists(), "remove keeps the persistent routes; purge drops them"
    log = scripts.run("postrm", "purge")
    assert not scripts.state.exists()
    assert "deb-systemd-helper purge mfc-dbus.service" in log
