"""`make install` for systems without the .deb: the unit's ExecStart= is where pip
really put mfc-dbusd (Debian's pip maps --prefix /usr to /usr/local), the data files
land where the bus, polkitd and systemd read them, and `make uninstall` removes it all."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mfc_lab.bus import REPO_ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
DATA_FILES = [
    "usr/share/dbus-1/system.d/org.mfc.Forwarding1.conf",
    "usr/share/dbus-1/system-services/org.mfc.Forwarding1.service",
    "usr/share/dbus-1/interfaces/org.mfc.Forwarding1.xml",
    "usr/share/polkit-1/actions/org.mfc.Forwarding1.policy",
    "usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules",
    "usr/share/doc/mfc-dbus/dbus-api.md",
    "usr/share/man/man1/mfc-dbus.1",
    "usr/share/man/man8/mfc-dbusd.8",
    "usr/share/bash-completion/completions/mfc-dbus",
    "usr/lib/systemd/system/mfc-dbus.service",
]


def _make(target: str, stage: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target, f"DESTDIR={stage}", "PREFIX=/usr",
         f"INSTALL_PYTHON={SYSTEM_PYTHON}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_install_then_uninstall(tmp_path: Path) -> None:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"needs {SYSTEM_PYTHON}")
    stage = tmp_path / "stage"
    result = _make("install", stage)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stderr.strip(), result.stderr

    missing = [path for path in DATA_FILES if not (stage / path).is_file()]
    assert not missing
    unit = (stage / "usr/lib/systemd/system/mfc-dbus.service").read_text()
    execstart = re.search(r"^ExecStart=(\S+) ", unit, re.M)[1]
    daemon = stage / execstart.lstrip("/")
    assert daemon.is_file(), f"ExecStart={execstart} is not what make install put down"
    assert daemon.read_text().startswith(f"#!{SYSTEM_PYTHON}\n")
    assert (daemon.parent / "mfc-dbus").is_file()
    assert f"mfc-dbusd is {execstart} " in result.stdout
    packages = list(stage.glob("usr/**/mfc_dbus/service/daemon.py"))
    assert len(packages) == 1, packages
    assert not list(stage.glob("usr/**/mfc_lab")), "the lab is test code, never shipped"
    assert (stage / "usr/share/mfc-dbus/install-manifest").is_file()

    result = _make("uninstall", stage)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(stage.iterdir()), sorted(str(p) for p in stage.rglob("*"))[:20]
    # A second uninstall has nothing to do and says so.
    result = _make("uninstall", stage)
    assert result.returncode == 0 and "nothing to do" in result.stdout
