"""The client's VIF calls (AddVif, RemoveVif, ListVifs) and one element of ListVifs as
it sees it; MfcClient (client.py) has these methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .client_bus import BusClient
from .client_options import make_options, unwrap
from .names import PENDING_VIF_INDEX


@dataclass(frozen=True)
class VifInfo:
    """One element of ListVifs; `index` is None while the interface is missing."""

    interface: str
    index: int | None
    family: str = "ipv4"
    table: int = 0
    ttl_threshold: int = 1
    explicit: bool = False
    state: str = "installed"
    in_packets: int = 0
    out_packets: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    mrdisc: bool = False

    @classmethod
    def from_dbus(cls, item: Sequence[Any]) -> VifInfo:
        interface, index, extra = item
        info = unwrap(extra)
        return cls(
            interface=interface,
            index=None if index == PENDING_VIF_INDEX else int(index),
            family=str(info.get("family", "ipv4")),
            table=int(info.get("table", 0)),
            ttl_threshold=int(info.get("ttl_threshold", 1)),
            explicit=bool(info.get("explicit", False)),
            state=str(info.get("state", "pending" if index == PENDING_VIF_INDEX else "installed")),
            in_packets=int(info.get("in_packets", 0)),
            out_packets=int(info.get("out_packets", 0)),
            in_bytes=int(info.get("in_bytes", 0)),
            out_bytes=int(info.get("out_bytes", 0)),
            mrdisc=bool(info.get("mrdisc", False)),
        )


class VifMethods(BusClient):
    """The VIF calls of MfcClient."""

    async def add_vif(
        self,
        interface: str,
        *,
        family: str | None = None,
        table: int | None = None,
        ttl_threshold: int | None = None,
        persistent: bool | None = None,
        mrdisc: bool | None = None,
    ) -> int | None:
        """Returns the VIF index, or None while the interface is missing (pending)."""
        options = make_options(
            family=family,
            table=table,
            ttl_threshold=ttl_threshold,
            persistent=persistent,
            mrdisc=mrdisc,
        )
        (index,) = await self.invoke("AddVif", interface, options)
        return None if index == PENDING_VIF_INDEX else int(index)

    async def remove_vif(
        self, interface: str, *, family: str | None = None, table: int | None = None
    ) -> None:
        await self.invoke("RemoveVif", interface, make_options(family=family, table=table))

    async def list_vifs(
        self, *, family: str | None = None, table: int | None = None
    ) -> list[VifInfo]:
        (items,) = await self.invoke("ListVifs", make_options(family=family, table=table))
        return [VifInfo.from_dbus(item) for item in items]
