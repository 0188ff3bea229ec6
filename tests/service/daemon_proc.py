"""mfc-dbusd inside the lab's router namespace, started by bus activation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus

MFC_DBUSD = str(Path(sys.executable).with_name("mfc-dbusd"))


def daemon_argv(lab: Lab, state_file: Path, *extra: str) -> list[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    return [ip, "netns", "exec", lab.rtr, MFC_DBUSD, "--state-file", str(state_file),
            "--log-level", "debug", *extra]  # fmt: skip


def activate_in_router(bus: PrivateBus, lab: Lab, state_file: Path) -> None:
    """The first call to org.mfc.Forwarding1 on `bus` starts mfc-dbusd in lab.rtr."""
    bus.add_activation(BUS_NAME, daemon_argv(lab, state_file))


def busctl_call(bus: PrivateBus, member: str, signature: str = "", *args: str, **kwargs):
    return bus.busctl("call", BUS_NAME, "/org/mfc/Forwarding1", "org.mfc.Forwarding1",
                      member, *([signature, *args] if signature else []), **kwargs)  # fmt: skip
