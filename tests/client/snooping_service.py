"""The service behind a real IGMP/MLD snooping bridge, for the client's lab tests.

One snooping lab (mfc_lab.bridge), one private system bus with python-dbusmock's
polkitd, and mfc-dbusd started by bus activation inside the router namespace; the
`mfc-dbus` command runs against that bus.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import require_root

from mfc_dbus.names import BUS_NAME
from mfc_lab import netns_run
from mfc_lab.bridge import SnoopingLab
from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.daemon import MFC_DBUS_CLI, MFC_DBUSD
from mfc_lab.polkit import MockPolkit


@dataclass
class SnoopingService:
    lab: SnoopingLab
    bus: PrivateBus
    polkit: MockPolkit
    state: Path  # the service's state file

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*MFC_DBUS_CLI, "--no-ask-password", *args], env=self.bus.env(),
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert (result.returncode, result.stderr) == (0, ""), (args, result.stderr)
        return result.stdout


World = TypeVar("World", bound=SnoopingService)


@contextlib.contextmanager
def snooping_service(
    world: Callable[[SnoopingLab, PrivateBus, MockPolkit, Path], World],
    bridge_options: Sequence[str] = (),
) -> Iterator[World]:
    """`world` built on a running lab and bus; `bridge_options` are given to the bridge
    (`ip link set BRIDGE type bridge ...`) before the service starts."""
    require_root()
    if shutil.which("bridge") is None:
        pytest.skip("needs iproute2's bridge")
    with (
        SnoopingLab() as lab,
        PrivateBus(extra_policy=MOCK_POLKIT_POLICY) as bus,
        MockPolkit(bus) as polkit,
    ):
        if bridge_options:
            netns_run(lab.sw, "ip", "link", "set", lab.bridge, "type", "bridge", *bridge_options)
        state = bus.directory / "state.json"
        argv = [shutil.which("ip"), "netns", "exec", lab.rtr, MFC_DBUSD,
                "--state-file", str(state), "--log-level", "debug"]  # fmt: skip
        bus.add_activation(BUS_NAME, argv)
        try:
            yield world(lab, bus, polkit, state)
        finally:
            bus.stop_owner(BUS_NAME)
