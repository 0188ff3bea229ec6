"""Polkit for the lab: python-dbusmock's polkitd template, the real polkitd with the
project's actions and example rule installed under unique names, and throwaway users.

Everything installed is removed on exit, even after a failure; processes are ended
by the PID this module started.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mfc_dbus.names import POLKIT_BUS_NAME, POLKIT_EXAMPLE_RULES, POLKIT_OBJECT_PATH, POLKIT_POLICY

from .bus import PrivateBus, data_file

POLKITD = Path("/usr/lib/polkit-1/polkitd")
ACTIONS_DIR = Path("/usr/share/polkit-1/actions")
RULES_DIR = Path("/etc/polkit-1/rules.d")
EXAMPLE_GROUP = "netdev"  # the group named in polkit/50-org.mfc.Forwarding1.rules
MOCK_INTERFACE = "org.freedesktop.DBus.Mock"


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class MockPolkit:
    """python-dbusmock's polkitd on `bus` (which needs bus.MOCK_POLKIT_POLICY)."""

    bus: PrivateBus
    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MockPolkit:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "polkitd"],
            env=self.bus.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self.bus.wait_for_name(POLKIT_BUS_NAME)
        except BaseException:
            _stop(self.process)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        _stop(self.process)
        self.process = None

    def set_allowed(self, actions: Sequence[str]) -> None:
        """Allow exactly `actions` (everything else is refused)."""
        self.bus.busctl("call", POLKIT_BUS_NAME, POLKIT_OBJECT_PATH, MOCK_INTERFACE,
                        "SetAllowed", "as", str(len(actions)), *actions)  # fmt: skip

    def allow_unknown(self, allow: bool) -> None:
        self.bus.busctl("call", POLKIT_BUS_NAME, POLKIT_OBJECT_PATH, MOCK_INTERFACE,
                        "AllowUnknown", "b", "true" if allow else "false")  # fmt: skip


@dataclass
class RealPolkit:
    """The real polkitd on `bus`, with the project's actions installed system-wide
    under a unique file name (polkitd reads actions from one directory only)."""

    bus: PrivateBus
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    installed: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RealPolkit:
        try:
            policy = data_file("polkit", POLKIT_POLICY).read_text()
            self._install(policy, ACTIONS_DIR / f"org.mfc.Forwarding1.lab-{self.suffix}.policy")
            self.process = subprocess.Popen(
                [str(POLKITD), "--no-debug"],
                env=self.bus.env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.bus.wait_for_name(POLKIT_BUS_NAME)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        _stop(self.process)
        self.process = None
        for path in reversed(self.installed):
            path.unlink(missing_ok=True)
        self.installed.clear()

    def _install(self, text: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.installed.append(path)
        path.write_text(text)
        path.chmod(0o644)
        return path

    def install_example_rule(self, group: str) -> Path:
        """The shipped example rule, granting the project's actions to `group`."""
        text = data_file("polkit", POLKIT_EXAMPLE_RULES).read_text()
        if f'"{EXAMPLE_GROUP}"' not in text:
            raise RuntimeError(f"the example rule no longer names group {EXAMPLE_GROUP!r}")
        text = text.replace(f'"{EXAMPLE_GROUP}"', f'"{group}"')
        name = POLKIT_EXAMPLE_RULES.replace(".rules", f"-lab-{self.suffix}.rules")
        return self._install(text, RULES_DIR / name)


@dataclass
class ThrowawayUser:
    """A system user (and its own group) that exists only inside the `with` block."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created: bool = False

    @property
    def name(self) -> str:
        return f"mfclab{self.suffix}"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return grp.getgrnam(self.name).gr_gid

    @property
    def group(self) -> str:
        return self.name

    def __enter__(self) -> ThrowawayUser:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", self.name],
            check=True, capture_output=True,
        )  # fmt: skip
        self.created = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.created:
            subprocess.run(["userdel", self.name], capture_output=True)
            subprocess.run(["groupdel", self.name], capture_output=True)  # if userdel left it
            self.created = False

    def run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
        """Run `argv` as this user (its own group only)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(list(argv), user=self.uid, group=self.gid, extra_groups=[], **kwargs)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            list(argv), user=self.uid, group=self.gid, extra_groups=[], **kwargs
        )


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until true or `timeout`; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
