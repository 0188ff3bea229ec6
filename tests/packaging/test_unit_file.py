"""systemd/mfc-dbus.service as a real host runs it: ordered after the bus, a start that
keeps failing really trips the start limit, documentation that is installed."""

from __future__ import annotations

import re

from mfc_lab.bus import REPO_ROOT

UNIT = (REPO_ROOT / "systemd/mfc-dbus.service").read_text()


def _sections() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|min)?", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "min": 60}.get(match[2] or "s", 1)


def test_ordered_after_the_bus() -> None:
    """At shutdown units stop in reverse start order: after dbus.service means the
    service stops while the bus still runs."""
    unit = _sections()["Unit"]
    after = " ".join(unit["After"]).split()
    assert "dbus.service" in after and "dbus.socket" in after
    assert "dbus.socket" in " ".join(unit["Requires"]).split()


def test_a_failing_start_trips_the_start_limit() -> None:
    """StartLimit* live in [Unit] (systemd ignores them in [Service] since 230). A start
    that fails at once comes round every RestartSec plus the start itself (0.2-0.5 s
    for Python here): Burst of them must fit in the interval even at 2 s each; and
    the limit must leave room for restarts an administrator makes (they count too),
    since giving up empties the fd store and the kernel flushes."""
    sections = _sections()
    assert "StartLimitIntervalSec" not in sections["Service"]
    interval = _seconds(sections["Unit"]["StartLimitIntervalSec"][-1])
    burst = int(sections["Unit"]["StartLimitBurst"][-1])
    restart_sec = _seconds(sections["Service"]["RestartSec"][-1])
    assert sections["Service"]["Restart"][-1] == "on-failure"
    assert 5 <= burst <= 10
    assert burst * (restart_sec + 2) <= interval, "the limit would never trip"
    assert interval / burst <= 5, "a few restarts a minute would trip the limit"


def test_documentation_is_installed_man_pages() -> None:
    docs = " ".join(_sections()["Unit"]["Documentation"]).split()
    assert docs == ["man:mfc-dbusd(8)", "man:mfc-dbus(1)"]
    for doc in docs:
        name, section = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc).groups()
        assert (REPO_ROOT / "man" / f"{name}.{section}").is_file(), doc
