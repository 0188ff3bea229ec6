"""What the system tests need from the host: root, the tools, the cached root
filesystems (scripts/rootfs.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITES = os.environ.get("MFC_SYSTEST_SUITES", "bookworm trixie").replace(",", " ").split()


def require_host() -> None:
    """Skip (a failure under MFC_NO_SKIP=1) without root or the tools."""
    if os.geteuid() != 0:
        pytest.skip("needs root: systemd-nspawn, cgroups, mmdebstrap")
    for tool in ("systemd-nspawn", "mmdebstrap", "nsenter", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (apt install systemd-container mmdebstrap util-linux)")


def rootfs_tarball(suite: str) -> Path:
    """The cached root filesystem of `suite`, built first if missing."""
    done = subprocess.run(
        [str(REPO / "scripts" / "rootfs.sh"), suite], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/rootfs.sh {suite} failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])
