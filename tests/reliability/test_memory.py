"""bench/memory.py against the live service: RSS growth over 10,000 add/remove cycles,
after 10,000 that fill what the libraries keep, stays under 5 MB, and the JSON report
carries the four figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import OLD_DBUS_FAST, require_root

BENCH = Path(__file__).parents[2] / "bench" / "memory.py"


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.xfail(
    OLD_DBUS_FAST, strict=False,
    reason="open finding: with Debian 12's dbus-fast 1.84 the service's RSS now and then "
    "jumps by 40-60 MiB during the cycles (most runs: 1-2 MiB after the first 10,000); "
    "not yet explained (no growth in tracemalloc with a stand-in engine)",
)  # fmt: skip
def test_memory_growth_under_5_mib(tmp_path: Path) -> None:
    require_root()
    out = tmp_path / "memory.json"
    result = subprocess.run([sys.executable, str(BENCH), "--json", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())["results"]
    assert [row["phase"] for row in rows] == [
        "after start", "after 10,000 routes", "after 10,000 add/remove cycles",
        "after 10,000 more cycles",
    ]  # fmt: skip
    assert all(row["rss_mib"] > 10 for row in rows)  # a real process was measured
    assert rows[1]["rss_mib"] > rows[0]["rss_mib"]  # 10,000 routes are held in memory
    assert rows[3]["growth_mib"] < 5.0 and rows[3]["within_limit"] is True
