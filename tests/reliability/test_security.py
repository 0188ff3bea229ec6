"""Security: an unprivileged caller without polkit approval changes nothing.

A throwaway system user calls every mutating method over busctl, with and without
the allow-interactive-authorization flag, while python-dbusmock's polkitd refuses
everything: each call is refused (AccessDenied), the service logs the refusal with
the user's uid, and the kernel, the service's routes and the state file are
unchanged. Granting the one action through polkit then lets the same user through,
so the refusals came from polkit and not from something else. The user cannot own
the service's bus name, cannot set a read-only property, and unknown options are
refused whoever calls.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from dbus_fast import Variant

from mfc_dbus.names import (
    ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_ROUTES,
    BUS_NAME,
    DBUS_ACCESS_DENIED,
    INTERFACE,
    OBJECT_PATH,
)
from mfc_lab import Lab
from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.daemon import kernel_entries
from mfc_lab.polkit import MockPolkit, ThrowawayUser

from .helpers import Caller, require_root, served

S4, G4 = Lab.source_address(), Lab.group()
# Every mutating method with arguments that root could apply successfully.
MUTATIONS: dict[str, list[str]] = {
    "AddRoute": ["sssasa{sv}", S4, "239.8.8.8", "up0", "1", "down0", "0"],
    "AddRoutes": ["a(sssasa{sv})a{sv}", "1", S4, "239.8.8.9", "up0", "1", "down1", "0", "0"],
    "RemoveRoute": ["ssa{sv}", S4, G4, "0"],
    "AddOutputs": ["ssasa{sv}", S4, G4, "1", "down1", "0"],
    "RemoveOutputs": ["ssasa{sv}", S4, G4, "1", "down0", "0"],
    "Flush": ["a{sv}", "0"],
    "AddVif": ["sa{sv}", "down1", "0"],
    "RemoveVif": ["sa{sv}", "up0", "0"],
    "JoinGroup": ["sssa{sv}", "up0", "", "233.252.0.51", "0"],
    "LeaveGroup": ["sssa{sv}", "up0", "", "233.252.0.50", "0"],
    "Reload": [],
}


def busctl_as(user: ThrowawayUser, bus: PrivateBus, member: str, *args: str,
              interactive: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
    flag = f"--allow-interactive-authorization={'yes' if interactive else 'no'}"
    return user.run(["busctl", f"--address={bus.address}", flag, "call", BUS_NAME,
                     OBJECT_PATH, INTERFACE, member, *args])  # fmt: skip


def test_every_mutating_method_is_tried() -> None:
    xml = (Path(__file__).parents[2] / "dbus" / "org.mfc.Forwarding1.xml").read_text()
    annotated = xml.count('name="org.mfc.Forwarding1.PolkitAction"')
    assert len(MUTATIONS) == annotated == 11


@pytest.mark.root
def test_unprivileged_caller_changes_nothing(tmp_path: Path) -> None:
    require_root()
    with Lab(downstreams=2) as lab, ThrowawayUser() as user:
        with served(tmp_path, lab, extra_policy=MOCK_POLKIT_POLICY) as (bus, service):
            with MockPolkit(bus) as polkit:
                polkit.set_allowed([])
                polkit.allow_unknown(False)
                _scenario(lab, bus, service, polkit, user, tmp_path / "state.json")


def _listed(bus: PrivateBus) -> list:
    async def call() -> list:
        caller = await Caller.connect(bus.address)
        try:
            routes = await caller.list_routes()
            vifs = (await caller.ok("ListVifs", "a{sv}", [{}]))[0]
            groups = (await caller.ok("ListGroups", "a{sv}", [{}]))[0]
            return [sorted((r[0], r[1], r[2], tuple(r[3])) for r in routes),
                    sorted((v[0], v[1]) for v in vifs),
                    sorted((g[0], g[1], g[2]) for g in groups)]  # fmt: skip
        finally:
            caller.close()

    return asyncio.run(call())


def _on_disk(state: Path) -> tuple[str | None, ...]:
    """The state snapshot and its journal, byte for byte (either may not exist yet)."""
    files = (state, state.with_name(state.name + ".journal"))
    return tuple(path.read_text() if path.exists() else None for path in files)


def _scenario(lab: Lab, bus: PrivateBus, service, polkit: MockPolkit, user: ThrowawayUser,
              state: Path) -> None:  # fmt: skip
    # Root (trusted without polkit) sets up what the user will try to change.
    root = asyncio.run(_root_setup(bus.address))
    assert root == "ok"
    before = (kernel_entries(lab), _listed(bus), _on_disk(state))

    for member, args in MUTATIONS.items():
        for interactive in (False, True):
            result = busctl_as(user, bus, member, *args, interactive=interactive)
            assert result.returncode != 0, f"{member} succeeded for uid {user.uid}"
            assert "Access denied" in result.stderr, (member, result.stderr)
        refusal = f"{member} refused: {DBUS_ACCESS_DENIED}: uid {user.uid} is not authorized"
        assert refusal in service.log_text(), member
    assert (kernel_entries(lab), _listed(bus), _on_disk(state)) == before

    # The user cannot take the service's name, nor write a property.
    owned = user.run(["busctl", f"--address={bus.address}", "call", "org.freedesktop.DBus",
                      "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName", "su",
                      BUS_NAME, "4"])  # fmt: skip
    assert owned.returncode != 0 and "Access denied" in owned.stderr, owned.stderr
    written = user.run(["busctl", f"--address={bus.address}", "set-property", BUS_NAME,
                        OBJECT_PATH, INTERFACE, "RouteCount", "u", "0"])  # fmt: skip
    assert written.returncode != 0, written.stdout
    assert bus.owner_pid(BUS_NAME) == service.pid

    # Unknown options are refused, for the user as for root, before anything changes.
    bogus = ["sssasa{sv}", S4, "239.8.8.8", "up0", "1", "down0", "1", "bogus", "b", "true"]
    refused = busctl_as(user, bus, "AddRoute", *bogus)
    assert refused.returncode != 0 and "unknown option 'bogus'" in refused.stderr
    assert asyncio.run(_root_bogus(bus.address)).startswith("unknown option 'bogus'")

    # Granted by polkit, the same user and calls go through: the refusals were polkit's.
    polkit.set_allowed([ACTION_MANAGE_ROUTES])
    added = busctl_as(user, bus, "AddRoute", *MUTATIONS["AddRoute"])
    assert added.returncode == 0, added.stderr
    assert (S4, "239.8.8.8", 0, "up0", frozenset({"down0"})) in kernel_entries(lab)
    vif = busctl_as(user, bus, "AddVif", *MUTATIONS["AddVif"])  # another action: still refused
    assert vif.returncode != 0 and "Access denied" in vif.stderr
    polkit.set_allowed([ACTION_MANAGE_ROUTES, ACTION_MANAGE_INTERFACES])
    assert busctl_as(user, bus, "AddVif", *MUTATIONS["AddVif"]).returncode == 0
    assert f"uid={user.uid} sender=" in service.log_text()  # the audit trail names the user
    assert service.unhandled() == [], service.log_tail()


async def _root_setup(address: str) -> str:
    caller = await Caller.connect(address)
    try:
        await caller.ok("AddVif", "sa{sv}", ["up0", {}])
        await caller.ok("AddRoute", "sssasa{sv}", [S4, G4, "up0", ["down0"], {}])
        await caller.ok("JoinGroup", "sssa{sv}", ["up0", "", "233.252.0.50", {}])
        return "ok"
    finally:
        caller.close()


async def _root_bogus(address: str) -> str:
    caller = await Caller.connect(address)
    try:
        reply = await caller.call(
            "AddRoute", "sssasa{sv}", [S4, G4, "up0", ["down1"], {"bogus": Variant("b", True)}]
        )
        assert reply.error_name == "org.mfc.Forwarding1.Error.InvalidArgument"
        return reply.body[0]
    finally:
        caller.close()
