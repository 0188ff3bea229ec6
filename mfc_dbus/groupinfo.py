"""One element of ListGroups, as the client sees it (client.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant


def _plain(value: Any) -> Any:
    return _plain(value.value) if isinstance(value, Variant) else value


@dataclass(frozen=True)
class GroupInfo:
    interface: str
    source: str  # "*" for any source
    group: str
    state: str = "joined"
    interfaces: tuple[str, ...] = ()
    memberships: int = 0
    error: str | None = None
    persistent: bool = True
    owner: str | None = None
    table: int = 0
    family: str = ""
    origin: str | None = None  # FILE:LINE of a configuration file's join

    @classmethod
    def from_dbus(cls, item: Sequence[Any]) -> GroupInfo:
        interface, source, group, extra = item
        info = {key: _plain(value) for key, value in extra.items()}
        return cls(
            interface=interface,
            source=source or "*",
            group=group,
            state=str(info.get("state", "joined")),
            interfaces=tuple(info.get("interfaces", ())),
            memberships=int(info.get("memberships", 0)),
            error=info.get("error") or None,
            persistent=bool(info.get("persistent", True)),
            owner=info.get("owner") or None,
            table=int(info.get("table", 0)),
            family=str(info.get("family") or ("ipv6" if ":" in group else "ipv4")),
            origin=info.get("origin") or None,
        )
