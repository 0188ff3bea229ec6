"""Running the mfc-dbus client as an unprivileged user of the lab.

The project's .venv may live under /root, where other users cannot reach its Python;
Debian's own python3 of the same version runs the client with the venv's packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dbus_fast

from .bus import REPO_ROOT, PrivateBus


def user_python() -> str:
    """A Python executable any user may run, of the version the venv was built for."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(system) if system.exists() else sys.executable


def client_argv() -> list[str]:
    """argv prefix that runs `mfc-dbus` for any user."""
    return [user_python(), "-m", "mfc_dbus.cli"]


def client_env(bus: PrivateBus) -> dict[str, str]:
    """A minimal environment for a user's client on `bus`."""
    site_packages = Path(dbus_fast.__file__).resolve().parents[1]
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": f"{REPO_ROOT}:{site_packages}",
        "DBUS_SYSTEM_BUS_ADDRESS": bus.address,
        "LANG": "C.UTF-8",
    }
