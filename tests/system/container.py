"""A Debian root filesystem booted with a real systemd in systemd-nspawn.

PID 1 on the test machines is not systemd, so a real one boots in a container
(../../shared/DESIGN.md, "Real hosts"):

- the root is a cached mmdebstrap tarball (scripts/rootfs.sh), extracted into a
  unique directory under /var/tmp and removed afterwards, even on failure;
- `systemd-nspawn --boot --register=no --keep-unit --private-network` runs in a
  cgroup of its own (made here, in every cgroup hierarchy nspawn touches, and
  removed afterwards: otherwise nspawn leaves /payload and /supervisor behind);
- commands run inside with `nsenter --target <container PID 1> --all` and a clean
  environment (no machined: --register=no rules out machinectl and systemd-run -M);
- boot is awaited with `systemctl is-system-running --wait`, shutdown with
  `systemctl poweroff` and nspawn's exit; a reboot makes nspawn exit 133 and the
  same directory boots again.

Nothing here touches the host's network: the container has its own namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

PREFIX = "mfc-systest-"  # every directory and cgroup this harness makes
PR_SET_PDEATHSIG = 1
NSPAWN_REBOOT_EXIT = 133  # systemd-nspawn's exit status when the container rebooted
_PID1_SIGNAL = {"reboot": int(signal.SIGINT), "poweroff": int(signal.SIGRTMIN) + 4}
INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class ContainerError(RuntimeError):
    pass


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval=0.05):
    """Poll `condition` until it returns something true; raise with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ContainerError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _cgroup_mounts() -> list[Path]:
    """Every cgroup (v1) and cgroup2 mount point of this machine."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] in ("cgroup", "cgroup2"):
                mounts.append(Path(left.split(" ")[4]))
    return mounts


def _unified_mount() -> Path:
    for mount in _cgroup_mounts():
        if (mount / "cgroup.controllers").exists():
            return mount
    raise ContainerError("no cgroup2 hierarchy mounted")


def _own_cgroup2() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return "/"


def _remove_cgroup_tree(path: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup and its children, deepest first, once their processes are gone."""
    if not path.exists():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        wait_for(lambda s=sub: _try_rmdir(s), timeout, f"cgroup {sub} to empty")
    wait_for(lambda: _try_rmdir(path), timeout, f"cgroup {path} to empty")


def _try_rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY while processes are still leaving
        return False
    return True


class Container:
    """One booted Debian; use as a context manager (removed even on failure)."""

    def __init__(self, suite: str, tarball: Path, base: Path = Path("/var/tmp")):
        self.suite = suite
        self.tarball = Path(tarball)
        self.name = f"{PREFIX}{suite}-{uuid.uuid4().hex[:8]}"
        self.dir = base / self.name
        self.root = self.dir / "root"
        unified = _unified_mount()
        self._cgroup_rel = Path(_own_cgroup2().lstrip("/")) / self.name
        self.cgroup = unified / self._cgroup_rel
        self.nspawn: subprocess.Popen | None = None
        self.leader: int | None = None
        self.boots = 0
        self.timings: dict[str, float] = {}
        self._lock = None

    # -- life cycle ------------------------------------------------------------------
    def __enter__(self) -> Container:
        try:
            self.create()
            self.boot()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def create(self) -> None:
        started = time.monotonic()
        self.root.mkdir(parents=True)
        # Held while this process lives: a later run's sweep_stale() knows it is not stale.
        self._lock = open(self.dir / ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        subprocess.run(
            ["tar", "-C", str(self.root), "--numeric-owner", "-xpf", str(self.tarball)],
            check=True,
            capture_output=True,
        )
        self.timings["extract"] = time.monotonic() - started

    def boot(self, timeout: float = 60.0) -> None:
        """Start nspawn in the container's own cgroup and wait until systemd is up."""
        if self.nspawn is not None:
            raise ContainerError("already booted")
        started = time.monotonic()
        self.cgroup.mkdir(exist_ok=True)
        procs = self.cgroup / "cgroup.procs"
        libc = ctypes.CDLL(None)
        self.boots += 1
        log = open(self.dir / f"console-{self.boots}.log", "wb")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
            "SYSTEMD_COLORS": "0",
        }

        def into_cgroup() -> None:  # in the child, before exec: nspawn starts in our cgroup
            with open(procs, "w") as f:
                f.write("0")
            # If this harness is killed (SIGKILL skips every finally), nspawn gets SIGTERM
            # and powers the container off; sweep_stale() removes the rest next time.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        argv = [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit",
            "--private-network", "--console=read-only", "--quiet",
            f"--machine={self.name}", "-D", str(self.root),
        ]  # fmt: skip
        try:
            self.nspawn = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=into_cgroup,
            )
        finally:
            log.close()
        self.leader = wait_for(self._find_leader, timeout, "the container's PID 1")
        state = wait_for(self._system_state, timeout, "systemctl is-system-running --wait")
        if state != "running":
            failed = self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
            raise ContainerError(f"{self.suite} booted {state!r}; failed units:\n{failed}")
        self.timings[f"boot{self.boots}"] = time.monotonic() - started

    def _find_leader(self) -> int | None:
        """nspawn's child that runs systemd in a PID namespace of its own."""
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise ContainerError(
                f"systemd-nspawn exited {self.nspawn.returncode} during boot:\n{self.console()}"
            )
        own_pidns = os.readlink("/proc/self/ns/pid")
        try:
            children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            return None
        for pid in pids:
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                pidns = os.readlink(f"/proc/{pid}/ns/pid")
            except OSError:
                continue
            if comm == "systemd" and pidns != own_pidns:
                return pid
        return None

    def _system_state(self) -> str | None:
        """The state once systemd answers (None while it cannot be reached yet).

        systemctl says "offline" until PID 1 has created /run/systemd/system, which a
        fast look right after the leader appears can beat: that is "not yet" too."""
        done = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=120)
        state = done.stdout.strip()
        return state if state and state not in ("initializing", "starting", "offline") else None

    def shutdown(self, timeout: float = 60.0) -> int:
        """`systemctl poweroff` inside; returns nspawn's exit status (0 expected)."""
        return self._stop("poweroff", timeout)

    def reboot(self, timeout: float = 60.0) -> int:
        """`systemctl reboot` inside, nspawn's exit awaited, then boot the same root."""
        status = self._stop("reboot", timeout)
        if status != NSPAWN_REBOOT_EXIT:
            raise ContainerError(
                f"nspawn exited {status} after `systemctl reboot` (expected "
                f"{NSPAWN_REBOOT_EXIT}):\n{self.console()}"
            )
        self.boot(timeout)
        return status

    def _stop(self, verb: str, timeout: float) -> int:
        if self.nspawn is None:
            raise ContainerError("not booted")
        started = time.monotonic()
        # Ask PID 1 by signal, as ctrl-alt-del and a container manager do: `systemctl
        # reboot` asks logind over the bus first, and a test may have left logind
        # without its bus (`systemctl restart dbus`), where it hangs. SIGINT starts
        # ctrl-alt-del.target (reboot), SIGRTMIN+4 poweroff.target: both clean.
        self.run(["kill", f"-{_PID1_SIGNAL[verb]}", "1"], check=True, timeout=30)
        try:
            status = self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise ContainerError(f"container did not {verb} within {timeout:g} s") from None
        finally:
            self.nspawn = self.leader = None
        self._clear_cgroups()
        self.timings[verb] = time.monotonic() - started
        return status

    def _kill(self) -> None:
        """Last resort, by PID: SIGKILL the container's PID 1 (its whole PID namespace
        dies with it), then nspawn itself."""
        for pid in (self.leader, self.nspawn.pid if self.nspawn else None):
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.nspawn is not None:
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def _clear_cgroups(self) -> None:
        """Remove our cgroup (and what nspawn made under it) in every hierarchy."""
        for mount in _cgroup_mounts():
            _remove_cgroup_tree(mount / self._cgroup_rel)

    def destroy(self) -> None:
        """Shut down if running (kill by PID if that hangs); remove cgroups and files."""
        try:
            if self.nspawn is not None and self.nspawn.poll() is None:
                try:
                    self.shutdown(timeout=30)
                except Exception:
                    self._kill()
            self.nspawn = self.leader = None
            self._clear_cgroups()
        finally:
            self._remove_dir()

    def _remove_dir(self) -> None:
        if not self.dir.exists():
            return
        # nspawn unmounts everything on exit; never rm -rf through a leftover mount.
        with open("/proc/self/mountinfo") as f:
            leftovers = [
                line.split(" ")[4] for line in f if line.split(" ")[4].startswith(f"{self.dir}/")
            ]
        for mount in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.dir)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- inside ----------------------------------------------------------------------
    def argv(self, argv: Sequence[str], user: str | None = None, netns: str | None = None,
             env: dict[str, str] | None = None) -> list[str]:  # fmt: skip
        """The host argv that runs `argv` inside the container (as `user`, in `netns`)."""
        if self.leader is None:
            raise ContainerError("not booted")
        inner = list(argv)
        if netns is not None:
            inner = ["ip", "netns", "exec", netns, *inner]
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        environment = [f"{k}={v}" for k, v in {**INNER_ENV, **(env or {})}.items()]
        return [
            "nsenter", f"--target={self.leader}", "--all", "--",
            "env", "-i", *environment, *inner,
        ]  # fmt: skip

    def run(self, argv: Sequence[str], *, user: str | None = None, netns: str | None = None,
            env: dict[str, str] | None = None, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        done = subprocess.run(
            self.argv(argv, user, netns, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise ContainerError(
                f"{' '.join(argv)} exited {done.returncode} in {self.suite}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done

    def popen(self, argv: Sequence[str], *, user: str | None = None, netns: str | None = None,
              **kwargs) -> subprocess.Popen:  # fmt: skip
        return subprocess.Popen(self.argv(argv, user, netns), **kwargs)

    def path(self, inner: str) -> Path:
        """The host path of an absolute path inside the container's root."""
        return self.root / inner.lstrip("/")

    def write(self, inner: str, data: str | bytes, mode: int = 0o644) -> None:
        target = self.path(inner)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def console(self) -> str:
        log = self.dir / f"console-{self.boots}.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def sweep_stale(base: Path = Path("/var/tmp")) -> list[str]:
    """Remove what a killed earlier run left: a container directory whose lock nobody
    holds, and its cgroups once they hold no process. Running containers of other runs
    hold their lock and are left alone; so is anything with a process still in it."""
    removed = []
    own = Path(_own_cgroup2().lstrip("/"))
    for directory in sorted(base.glob(f"{PREFIX}*")):
        lock_path = directory / ".lock"
        if not directory.is_dir() or not lock_path.exists():
            continue
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run's
            busy = False
            for mount in _cgroup_mounts():
                cgroup = mount / own / directory.name
                if cgroup.exists() and any(
                    (sub / "cgroup.procs").read_text().strip()
                    for sub in [cgroup, *cgroup.rglob("*")]
                    if (sub / "cgroup.procs").exists()
                ):
                    busy = True
            if busy:
                continue
            for mount in _cgroup_mounts():
                _remove_cgroup_tree(mount / own / directory.name, timeout=1)
            with open("/proc/self/mountinfo") as f:
                if any(line.split(" ")[4].startswith(f"{directory}/") for line in f):
                    continue
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.name)
    return removed
