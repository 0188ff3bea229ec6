"""Adopting a kernel table that outlived its process, against the real kernel: the
table is ready before it is read back, then the read-back mends what was changed
behind the engine's back (an entry deleted, one changed, one added by another tool)
and leaves alone what is right: written again are only the two that differ."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from pathlib import Path

from engine_helpers import kernel_view, route

from mfc_dbus.engine import Engine, LinuxKernel
from mfc_dbus.engine.sockets import KernelSockets
from mfc_dbus.kernel import adopt_mroute_socket
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns

V4 = Family.IPV4
GROUP = "233.252.0.77"
ROUTES = 50


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


async def _first_life(state: Path, runtime: Path, stored: dict[str, int]) -> None:
    def keep(fd: int, name: str) -> bool:
        stored[name] = os.dup(fd)
        return True

    engine = Engine(state, kernel=LinuxKernel(KernelSockets({}, keep)), runtime_file=runtime)
    await engine.start()
    engine.add_routes([route(f"10.9.0.{n + 1}", GROUP, "up0", "down0") for n in range(ROUTES)])
    await engine.stop(flush=False)  # as SIGTERM with the sockets stored
    engine._tables.close()  # the process exits: its own copies close


async def _second_life(state: Path, runtime: Path, passed: dict[str, int]) -> dict:
    engine = Engine(state, kernel=LinuxKernel(KernelSockets(passed)), runtime_file=runtime)
    await engine.start()
    try:
        assert engine.route_count == ROUTES  # ready: the state is restored
        assert engine.verifying  # the read-back is still to come
        await engine.verified()
        assert not engine.verifying
        return engine.kernel_view(V4)
    finally:
        await engine.stop()


def test_the_adopted_table_is_verified_after_start(lab: Lab, tmp_path: Path, caplog) -> None:
    state, runtime = tmp_path / "state.json", tmp_path / "runtime.json"
    stored: dict[str, int] = {}  # systemd's fd store
    try:
        _adopt_a_changed_table(lab, state, runtime, stored, caplog)
    finally:
        for fd in stored.values():  # as `systemctl stop`: the kernel flushes
            os.close(fd)
    assert kernel_view(lab, V4) == {}


def _adopt_a_changed_table(lab, state, runtime, stored, caplog) -> None:
    with in_netns(lab.rtr):
        asyncio.run(_first_life(state, runtime, stored))
        wanted = kernel_view(lab, V4)
        assert len(wanted) == ROUTES
        # While no process runs, another tool changes the table.
        other = adopt_mroute_socket(V4, 0, os.dup(stored["mroute-ipv4-0"]))
        other.del_mfc(_packed("10.9.0.1"), _packed(GROUP))  # missing now
        other.add_mfc(_packed("10.9.0.2"), _packed(GROUP), 0, {})  # differs now
        other.add_mfc(_packed("10.9.9.9"), _packed(GROUP), 0, {1: 1})  # nobody's route
        other.close()
        assert kernel_view(lab, V4) != wanted
        with caplog.at_level(logging.INFO, logger="mfc_dbus"):
            passed = {name: os.dup(fd) for name, fd in stored.items()}  # as systemd passes
            view = asyncio.run(_second_life(state, runtime, passed))
    assert view == wanted
    assert ("ipv4 table 0: adopted 48 MFC entries from the kernel (2 written again, "
            "1 removed)") in caplog.text  # fmt: skip
    assert "(10.9.0.2, 233.252.0.77) differs in the kernel" in caplog.text
    assert "removing (10.9.9.9, 233.252.0.77) from the adopted table" in caplog.text
