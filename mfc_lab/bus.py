"""A private system-type bus for the lab: the project's own policy, generated
activation files, and no servicehelper (which only serves the real system bus).

    with PrivateBus() as bus:
        bus.add_activation(BUS_NAME, ["/usr/bin/ip", "netns", "exec", rtr, ...])
        subprocess.run(["busctl", f"--address={bus.address}", ...])

Never touches /run/dbus/system_bus_socket. Everything lives in a per-run directory
that is removed on exit; processes it started (the daemon and what it activated)
are ended by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from mfc_dbus.names import BUS_POLICY_CONF, POLKIT_BUS_NAME

from .resource import Resource

REPO_ROOT = Path(__file__).resolve().parents[1]
POLKIT_BUS_POLICY = Path("/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf")
# Lets a root-run python-dbusmock polkitd own the polkit name on the private bus.
MOCK_POLKIT_POLICY = f'<policy user="root"><allow own="{POLKIT_BUS_NAME}"/></policy>'

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <limit name="max_replies_per_connection">1024</limit>
{includes}
{extra}
</busconfig>
"""


def data_file(*parts: str) -> Path:
    """A data file of the checkout (dbus/, polkit/, systemd/)."""
    return REPO_ROOT.joinpath(*parts)


@dataclass
class PrivateBus(Resource):
    """A dbus-daemon of type system in a private directory; a context manager."""

    policies: Sequence[Path] = (data_file("dbus", BUS_POLICY_CONF), POLKIT_BUS_POLICY)
    extra_policy: str = ""
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    directory: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        assert self.directory is not None
        return self.directory / "system_bus_socket"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    @property
    def services(self) -> Path:
        assert self.directory is not None
        return self.directory / "system-services"

    @property
    def log(self) -> Path:
        assert self.directory is not None
        return self.directory / "dbus-daemon.log"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose system bus is this bus."""
        env = dict(os.environ if base is None else base)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        return env

    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"mfc-bus-{self.suffix}-"))
        self.directory.chmod(0o755)  # polkitd and throwaway users must reach the socket
        self.services.mkdir()
        self.services.chmod(0o755)
        includes = "\n".join(
            f'  <include ignore_missing="yes">{escape(str(path))}</include>'
            for path in self.policies
        )
        config = self.directory / "bus.conf"
        config.write_text(
            _CONFIG.format(
                socket=escape(str(self.socket)),
                services=escape(str(self.services)),
                includes=includes,
                extra=self.extra_policy,
            )
        )
        self._launch()

    def _launch(self) -> None:
        assert self.directory is not None
        config = self.directory / "bus.conf"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dbus-daemon did not start: {self.log.read_text()}")
            time.sleep(0.01)
        self.socket.chmod(0o666)

    def add_activation(self, name: str, argv: Sequence[str], user: str = "root") -> Path:
        """Write an activation file: the bus starts `argv` on the first call to `name`."""
        exec_line = " ".join(_quote(arg) for arg in argv)
        path = self.services / f"{name}.service"
        path.write_text(f"[D-BUS Service]\nName={name}\nExec={exec_line}\nUser={user}\n")
        self.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                    "org.freedesktop.DBus", "ReloadConfig")  # fmt: skip
        return path

    def busctl(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["busctl", f"--address={self.address}", *args],
            check=check,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def owner_pid(self, name: str) -> int | None:
        """PID of the process owning `name` on this bus, or None."""
        result = self.busctl(
            "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "GetConnectionUnixProcessID", "s", name, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        return int(result.stdout.split()[1])

    def wait_for_name(self, name: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while (pid := self.owner_pid(name)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not appear on {self.address}")
            time.sleep(0.02)
        return pid

    def stop_owner(self, name: str, timeout: float = 10.0) -> None:
        """End the process that owns `name` (one this bus activated), by PID."""
        pid = self.owner_pid(name)
        if pid is not None:
            terminate_pid(pid, timeout)

    def stop_daemon(self) -> None:
        """End dbus-daemon (by PID), keeping the directory: `restart_daemon()` starts
        a new one at the same address, as `systemctl restart dbus` would."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self.directory is not None:
            self.socket.unlink(missing_ok=True)

    def restart_daemon(self) -> None:
        self.stop_daemon()
        self._launch()

    def stop(self) -> None:
        self.stop_daemon()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM one process by PID, SIGKILL it if it outlives `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:,@+" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
