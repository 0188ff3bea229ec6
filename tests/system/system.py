"""The installed package as an administrator sees it, inside a booted container:
systemctl, busctl, journalctl, `ip mroute`, the `mfc-dbus` client."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from .container import Container, wait_for

UNIT = "mfc-dbus.service"
BUS_NAME = "org.mfc.Forwarding1"
OBJECT = "/org/mfc/Forwarding1"
EXIT_NOT_AUTHORIZED = 4  # mfc-dbus's exit status for a polkit refusal (README)


@dataclass
class DebianSystem:
    c: Container
    record: Callable[[str, object], None]
    installed: bool = False
    install_output: str = ""
    users: list[str] = field(default_factory=list)

    @property
    def suite(self) -> str:
        return self.c.suite

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("check", False)
        return self.c.run(list(argv), **kwargs)

    # -- the package and its unit -----------------------------------------------------
    def require_installed(self) -> None:
        assert self.installed, f"apt-get install of the .deb failed:\n{self.install_output}"

    def unit(self, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, UNIT, check=True).stdout.strip()

    def active_state(self) -> str:
        return self.run("systemctl", "is-active", UNIT).stdout.strip()

    def main_pid(self) -> int:
        return int(self.unit("MainPID"))

    def status(self) -> str:
        done = self.run("systemctl", "status", "--no-pager", "--lines=30", UNIT)
        return done.stdout + done.stderr

    def require_running(self) -> None:
        """Fail at once (with the unit's status) when the service cannot run, instead
        of letting every later call wait for a bus activation timeout."""
        self.require_installed()
        if self.active_state() == "active":
            return
        done = self.busctl("ListRoutes", "a{sv}", "0", timeout=30)
        assert done.returncode == 0 and self.active_state() == "active", (
            f"{UNIT} does not run on {self.suite}:\n{done.stderr}\n{self.status()}\n"
            f"{self.journal()[-3000:]}"
        )

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = self.run("systemctl", *args, timeout=timeout)
        assert done.returncode == 0, f"systemctl {' '.join(args)}: {done.stderr}\n{self.status()}"
        return done

    # -- calls ----------------------------------------------------------------------
    def busctl(self, method: str, *args: str, user: str | None = None,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.run(
            "busctl", f"--timeout={timeout:g}", "call", BUS_NAME, OBJECT, BUS_NAME, method,
            *args, user=user, timeout=timeout + 10,
        )  # fmt: skip

    def mfc(self, *args: str, user: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.run("mfc-dbus", f"--timeout={timeout:g}", *args, user=user,
                        timeout=timeout + 10)  # fmt: skip

    def route_add(self, *words: str, user: str | None = None) -> subprocess.CompletedProcess:
        return self.mfc("route", "add", *words, user=user)

    def name_owner_pid(self) -> int | None:
        done = self.run(
            "busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s", BUS_NAME,
        )  # fmt: skip
        return int(done.stdout.split()[1]) if done.returncode == 0 else None

    # -- the kernel's table, the independent witness -----------------------------------
    def mroute(self, family: str = "ipv4") -> str:
        flag = "-6" if family == "ipv6" else "-4"
        return self.run("ip", flag, "mroute", "show", check=True).stdout

    def wait_mroute(self, needle: str, family: str = "ipv4", timeout: float = 15.0) -> str:
        def shown() -> str | None:
            text = self.mroute(family)
            return text if needle in text else None

        return wait_for(shown, timeout, f"{needle} in `ip {family} mroute show` on {self.suite}")

    # -- journal --------------------------------------------------------------------
    def journal_cursor(self) -> str:
        self.run("journalctl", "--sync")
        done = self.run("journalctl", "-q", "-n", "1", "-o", "export", check=True)
        for line in done.stdout.splitlines():
            if line.startswith("__CURSOR="):
                return line.split("=", 1)[1]
        raise AssertionError("no journal cursor")

    def journal(self, *args: str, after: str | None = None) -> str:
        """This unit's journal lines (all boots), optionally after a cursor."""
        self.run("journalctl", "--sync")
        argv = ["journalctl", "-q", "--no-pager", "-u", UNIT, "-o", "short-monotonic", *args]
        if after:
            argv.append(f"--after-cursor={after}")
        return self.run(*argv, check=True).stdout

    def warnings_since(self, cursor: str | None, *args: str) -> list[str]:
        """Lines of this unit at priority warning or worse (0-4) after `cursor`, and lines
        that say WARNING/ERROR/CRITICAL in their text whatever priority they were given
        (a service that does not pass its levels to journald logs everything at 6)."""
        urgent = self.journal("-p", "warning", *args, after=cursor).splitlines()
        worded = [
            line for line in self.journal(*args, after=cursor).splitlines()
            if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)
        ]  # fmt: skip
        return [line for line in urgent if line.strip()] + [
            line for line in worded if line not in urgent
        ]

    # -- users ------------------------------------------------------------------------
    def add_user(self, name: str, *, groups: tuple[str, ...] = (),
                 password: str | None = None) -> None:  # fmt: skip
        argv = ["useradd", "--no-create-home", "--shell", "/bin/sh"]
        if groups:
            argv += ["--groups", ",".join(groups)]
        self.run(*argv, name, check=True)
        self.users.append(name)
        if password is not None:
            self.run("chpasswd", input=f"{name}:{password}\n", check=True)

    def add_group(self, name: str) -> None:
        self.run("groupadd", name, check=True)


def security_exposure(text: str) -> float:
    """The overall exposure from `systemd-analyze security UNIT` output."""
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", text)
    if not match:
        raise AssertionError(f"no overall exposure in:\n{text[-2000:]}")
    return float(match.group(1))
