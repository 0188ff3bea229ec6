"""Shared plumbing for the benchmarks: argument parsing, a table, and JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def parse_args(description: str, **extra: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    for name, kwargs in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit(f"{parser.prog}: needs root (network namespaces, multicast-routing sockets)")
    return args


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def report(title: str, rows: list[dict], columns: list[str], path: Path | None) -> None:
    """Print rows as an aligned table and, if asked, write them with machine facts as JSON."""
    widths = [max(len(col), *(len(_cell(row.get(col))) for row in rows)) for col in columns]
    print(title)
    print("  ".join(col.ljust(width) for col, width in zip(columns, widths, strict=True)))
    for row in rows:
        cells = (_cell(row.get(col)).ljust(w) for col, w in zip(columns, widths, strict=True))
        print("  ".join(cells))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": title,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "kernel": platform.release(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "results": rows,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {path}")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)
