"""Shared fixtures: the root requirement and the namespace lab.

Tests that need root skip with a reason when not root. Under CI (MFC_NO_SKIP=1) any
skip is turned into a failure, so a root test can never pass by not running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from mfc_lab import Lab

IS_ROOT = os.geteuid() == 0
NO_SKIP = os.environ.get("MFC_NO_SKIP") == "1"


def require_root() -> None:
    if not IS_ROOT:
        pytest.skip("needs root: network namespaces and multicast-routing sockets")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip`")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under MFC_NO_SKIP=1 (CI requires every test to run): {reason}"


@pytest.fixture
def root() -> None:
    """Depend on this fixture to skip (or, in CI, fail) when not root."""
    require_root()


@pytest.fixture
def lab(root) -> Iterator[Lab]:
    """src -> rtr -> dst0, dst1: a fresh lab per test, removed even on failure."""
    with Lab(downstreams=2) as created:
        yield created
