"""On a private bus built from the project's own dbus/ policy, with the real polkitd
and the project's polkit actions installed: an unprivileged throwaway user is
refused, allowed once the example rule names its group, cannot own the name; the
first busctl call activates the service."""

from __future__ import annotations

from pathlib import Path

from mfc_dbus.names import (
    BUS_NAME,
    DBUS_ACCESS_DENIED,
    DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED,
)
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.polkit import RealPolkit, ThrowawayUser, wait_until

from .daemon_proc import activate_in_router

GROUP = Lab.group()
ADD = ["AddRoute", "sssasa{sv}", Lab.source_address(), GROUP, "up0", "1", "down0", "0"]


def _busctl(bus: PrivateBus, user: ThrowawayUser | None, *args: str):
    argv = ["busctl", f"--address={bus.address}", *args]
    if user is None:
        return bus.busctl(*args, check=False)
    return user.run(argv)


def _call(bus: PrivateBus, user: ThrowawayUser | None, *args: str, interactive=False):
    # busctl sets the flag unless told not to.
    flag = f"--allow-interactive-authorization={'yes' if interactive else 'no'}"
    return _busctl(bus, user, flag, "call", BUS_NAME, "/org/mfc/Forwarding1",
                   "org.mfc.Forwarding1", *args)  # fmt: skip


def test_real_polkit_user_refused_then_allowed_by_rule(lab: Lab, tmp_path: Path) -> None:
    with PrivateBus() as bus, RealPolkit(bus) as polkit, ThrowawayUser() as user:
        activate_in_router(bus, lab, tmp_path / "state.json")
        assert bus.owner_pid(BUS_NAME) is None

        # The user's first busctl call (a read) activates the service; reads need no auth.
        listed = _call(bus, user, "ListRoutes", "a{sv}", "0")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == "a(sssasa{sv}) 0"
        assert bus.owner_pid(BUS_NAME) is not None

        # Refused: a challenge without the flag, plain denial with it (no agent).
        refused = _call(bus, user, *ADD)
        assert refused.returncode != 0
        assert "needs authentication" in refused.stderr, refused.stderr
        refused = _call(bus, user, *ADD, interactive=True)
        assert refused.returncode != 0 and "Access denied" in refused.stderr, refused.stderr
        assert GROUP not in lab.mroute_show()
        log = bus.log.read_text()  # the activated service logs to the bus's stderr
        assert f"{DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED}: " in log
        assert f"{DBUS_ACCESS_DENIED}: uid {user.uid} is not authorized" in log

        # The user may not own the service's name (the bus policy: root only).
        owned = _busctl(bus, user, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "RequestName", "su", BUS_NAME, "4")  # fmt: skip
        assert owned.returncode != 0 and "Access denied" in owned.stderr, owned.stderr

        # The shipped example rule, for the user's group: allowed without a password.
        polkit.install_example_rule(user.group)
        assert wait_until(lambda: _call(bus, user, *ADD).returncode == 0, timeout=10)
        assert GROUP in lab.mroute_show()
        vif = _call(bus, user, "AddVif", "sa{sv}", "down1", "0")
        assert vif.returncode == 0, vif.stderr

        # Root passes without any rule (the uid-0 fast path).
        assert _call(bus, None, "RemoveRoute", "ssa{sv}", Lab.source_address(), GROUP,
                     "0").returncode == 0  # fmt: skip
        bus.stop_owner(BUS_NAME)
