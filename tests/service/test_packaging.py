"""The systemd unit verifies and matches the activation file. (`make install` and the
.deb: tests/packaging/.)"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfc_dbus.names import ACTIVATION_FILE, BUS_NAME, SYSTEMD_UNIT
from mfc_lab.bus import REPO_ROOT, data_file

UNIT = data_file("systemd", SYSTEMD_UNIT)
MFC_DBUSD = Path(sys.executable).with_name("mfc-dbusd")


def _unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's mfc-dbusd (verify checks it)."""
    path = tmp_path / SYSTEMD_UNIT
    path.write_text(UNIT.read_text().replace("/usr/bin/mfc-dbusd", str(MFC_DBUSD)))
    return path


def _manpath(tmp_path: Path) -> Path:
    """This checkout's man pages laid out as installed (verify runs `man` for each
    Documentation=man: entry)."""
    root = tmp_path / "man"
    for page in (REPO_ROOT / "man").iterdir():
        section = root / f"man{page.suffix[1:]}"
        section.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, section / page.name)
    return root


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit(tmp_path))],
        capture_output=True, text=True,
        env={**os.environ, "MANPATH": str(_manpath(tmp_path))},
    )  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_and_activation_file_agree() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["BusName"] == BUS_NAME
    assert service["NotifyAccess"] == "main"
    assert service["CapabilityBoundingSet"].split() == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert service["RestrictAddressFamilies"].split() == [
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK",
    ]  # fmt: skip
    assert service["ProtectSystem"] == "strict" and service["StateDirectory"] == "mfc-dbus"
    activation = configparser.ConfigParser(interpolation=None)
    activation.optionxform = str
    activation.read(data_file("dbus", ACTIVATION_FILE))
    entry = activation["D-BUS Service"]
    assert entry["Name"] == BUS_NAME and entry["SystemdService"] == SYSTEMD_UNIT
    assert entry["User"] == "root"
