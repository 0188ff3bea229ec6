"""Async D-Bus client for org.mfc.Forwarding1, reusable by any program.

One coroutine per D-Bus method, its signature, option types and polkit action taken
from the interface XML (mfc_dbus.contract); signals become Events whose arguments are
named as in the XML (RouteAdded: source, group, input, outputs, table, family).
D-Bus error names come back as the same `mfc_dbus.errors` classes the service raised;
bus-level failures (service absent, activation failed, no bus) become the client-only
classes of client_bus.py. Nothing in this module touches the kernel.

    async with await MfcClient.connect() as client:
        await client.add_route("", "232.1.1.1", "eth0", ["eth1"])
        for route in await client.list_routes():
            print(route.source, route.group, route.packets)

The calls live beside it by job: the connection and errors (client_bus.py), routes
(client_routes.py), VIFs (client_vifs.py), group joins (client_groups.py) and signals
(client_signals.py); this module is the one to import.
"""

from __future__ import annotations

from typing import Any

from .client_bus import (
    ACTION_BY_METHOD,
    ActivationFailed,
    BusUnavailable,
    NoReply,
    ServiceUnavailable,
    UnexpectedError,
    error_from_dbus,
)
from .client_groups import GroupInfo, GroupMethods
from .client_options import unwrap
from .client_routes import RouteInfo, RouteMethods, RouteSpec
from .client_signals import Event, SignalMethods, event_from_message
from .client_vifs import VifInfo, VifMethods
from .errors import AccessDenied, InteractiveAuthorizationRequired
from .names import DBUS_PROPERTIES_INTERFACE, INTERFACE


class MfcClient(RouteMethods, VifMethods, GroupMethods, SignalMethods):
    """A connection to org.mfc.Forwarding1 on the system bus (or `address`)."""

    async def reload(self) -> None:
        await self.invoke("Reload")

    async def properties(self) -> dict[str, Any]:
        """Version, RouteCount, VifCount, GroupCount, Families."""
        (values,) = await self.call(
            "GetAll", "s", [INTERFACE], interface=DBUS_PROPERTIES_INTERFACE
        )
        return unwrap(values)


__all__ = [
    "ACTION_BY_METHOD",
    "AccessDenied",
    "ActivationFailed",
    "BusUnavailable",
    "Event",
    "GroupInfo",
    "InteractiveAuthorizationRequired",
    "MfcClient",
    "NoReply",
    "RouteInfo",
    "RouteSpec",
    "ServiceUnavailable",
    "UnexpectedError",
    "VifInfo",
    "error_from_dbus",
    "event_from_message",
]
