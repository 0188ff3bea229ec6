"""The container harness itself, without the package: boot, run inside, reboot, and
leave nothing behind (directory, cgroups in every hierarchy, processes), also when
the body fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from .container import NSPAWN_REBOOT_EXIT, Container, _cgroup_mounts, sweep_stale
from .host import SUITES, require_host, rootfs_tarball

pytestmark = pytest.mark.system


def _assert_gone(c: Container, pids: tuple[int, ...]) -> None:
    assert not c.dir.exists()
    for mount in _cgroup_mounts():
        assert not (mount / c._cgroup_rel).exists(), mount / c._cgroup_rel
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), pid


@pytest.mark.parametrize("suite", SUITES)
def test_boot_run_reboot_and_cleanup(suite: str) -> None:
    require_host()
    with Container(suite, rootfs_tarball(suite)) as c:
        pids = (c.nspawn.pid, c.leader)
        assert c.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert c.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        # A network of its own: only lo until a test adds legs.
        links = c.run(["ip", "-o", "link", "show"]).stdout.splitlines()
        assert [line.split(":")[1].strip() for line in links] == ["lo"]
        # Files written from the host appear inside.
        c.write("/opt/mfc-systest/probe", "hello\n")
        assert c.run(["cat", "/opt/mfc-systest/probe"]).stdout == "hello\n"
        # nspawn's payload and supervisor cgroups live under ours.
        assert (c.cgroup / "payload").is_dir() and (c.cgroup / "supervisor").is_dir()
        # Another run's sweep leaves a live container alone.
        assert c.name not in sweep_stale() and c.root.is_dir()

        assert c.reboot() == NSPAWN_REBOOT_EXIT
        assert not Path(f"/proc/{pids[1]}").exists()
        pids += (c.nspawn.pid, c.leader)
        assert c.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert c.run(["cat", "/opt/mfc-systest/probe"]).stdout == "hello\n"  # same root
        boots = c.run(["journalctl", "--list-boots", "--no-pager", "-q"]).stdout
        assert len(boots.strip().splitlines()) == 2, boots
    _assert_gone(c, pids)


def test_cleanup_when_the_body_fails() -> None:
    require_host()
    suite = SUITES[0]
    with pytest.raises(ZeroDivisionError):
        with Container(suite, rootfs_tarball(suite)) as c:
            pids = (c.nspawn.pid, c.leader)
            1 / 0  # noqa: B018
    _assert_gone(c, pids)
