"""Findings and the report `mfc-dbus diagnose` prints (text or JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM = "problem"
OK = "ok"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: str  # problem, ok, info
    # stable: no-route, pending, no-source, no-packets, wrong-input, ttl, blocking, forwarding,
    # firewall, no-mrule, no-multicast-flag
    code: str
    message: str

    def json(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class Diagnosis:
    group: str
    source: str | None
    interval: float
    routes: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(f.severity == PROBLEM for f in self.findings)

    def add(self, severity: str, code: str, message: str) -> None:
        self.findings.append(Finding(severity, code, message))

    def json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "source": self.source,
            "interval": self.interval,
            "healthy": self.healthy,
            "routes": self.routes,
            "findings": [f.json() for f in self.findings],
        }

    def text(self) -> str:
        marks = {PROBLEM: "problem:", OK: "ok:", INFO: "note:"}
        return "\n".join(f"{marks[f.severity]} {f.message}" for f in self.findings)


def route_name(source: str, group: str, table: int) -> str:
    """How a finding names a route: `route S G`, with its table when not the default."""
    return f"route {source} {group}" + (f" table {table}" if table else "")
