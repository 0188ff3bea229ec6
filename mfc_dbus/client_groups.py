"""The client's group join calls (JoinGroup, LeaveGroup, ListGroups) and one element
of ListGroups as it sees it; MfcClient (client.py) has these methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

from .client_bus import BusClient
from .client_options import make_options


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


class GroupMethods(BusClient):
    """JoinGroup, LeaveGroup and ListGroups for MfcClient."""

    async def join_group(
        self,
        interface: str,
        source: str,
        group: str,
        *,
        table: int | None = None,
        persistent: bool | None = None,
        lease: bool | None = None,
    ) -> None:
        """Join `group` (from `source`, "" for any) on `interface`; see JoinGroup."""
        options = make_options(table=table, persistent=persistent, lease=lease)
        await self.invoke("JoinGroup", interface, source, group, options)

    async def leave_group(
        self, interface: str, source: str, group: str, *, table: int | None = None
    ) -> None:
        await self.invoke("LeaveGroup", interface, source, group, make_options(table=table))

    async def list_groups(
        self, *, family: str | None = None, table: int | None = None
    ) -> list[GroupInfo]:
        (items,) = await self.invoke("ListGroups", make_options(family=family, table=table))
        return [GroupInfo.from_dbus(item) for item in items]
