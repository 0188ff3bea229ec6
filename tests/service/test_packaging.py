"""The systemd unit verifies, matches the activation file, and `make install` puts
every data file where a distribution would."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mfc_dbus.lab.bus import REPO_ROOT, data_file
from mfc_dbus.names import ACTIVATION_FILE, BUS_NAME, SYSTEMD_UNIT

UNIT = data_file("systemd", SYSTEMD_UNIT)
MFC_DBUSD = Path(sys.executable).with_name("mfc-dbusd")


def _unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's mfc-dbusd (verify checks it)."""
    path = tmp_path / SYSTEMD_UNIT
    path.write_text(UNIT.read_text().replace("/usr/bin/mfc-dbusd", str(MFC_DBUSD)))
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_and_activation_file_agree() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "dbus" and service["BusName"] == BUS_NAME
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


def test_make_install_destdir_prefix(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    result = subprocess.run(
        ["make", "-s", "install", f"DESTDIR={stage}", "PREFIX=/usr",
         f"INSTALL_PYTHON={sys.executable}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    expected = [
        "usr/bin/mfc-dbusd",
        "usr/bin/mfc-dbus",
        "usr/share/dbus-1/system.d/org.mfc.Forwarding1.conf",
        "usr/share/dbus-1/system-services/org.mfc.Forwarding1.service",
        "usr/share/dbus-1/interfaces/org.mfc.Forwarding1.xml",
        "usr/share/polkit-1/actions/org.mfc.Forwarding1.policy",
        "usr/share/doc/mfc-dbus/50-org.mfc.Forwarding1.rules",
        "usr/lib/systemd/system/mfc-dbus.service",
    ]
    missing = [path for path in expected if not (stage / path).is_file()]
    assert not missing
    assert list(stage.glob("usr/lib/python3*/site-packages/mfc_dbus/service/daemon.py"))
    unit = (stage / "usr/lib/systemd/system/mfc-dbus.service").read_text()
    assert "ExecStart=/usr/bin/mfc-dbusd " in unit
