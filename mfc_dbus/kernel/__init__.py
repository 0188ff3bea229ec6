"""The only code that talks to the kernel's multicast routing API."""

from .mroute import MrouteSocket, SgCounters, Upcall, UpcallKind, VifCounters
from .mroute_families import (
    Ipv4MrouteSocket,
    Ipv6MrouteSocket,
    adopt_mroute_socket,
    open_mroute_socket,
)

__all__ = [
    "Ipv4MrouteSocket",
    "Ipv6MrouteSocket",
    "MrouteSocket",
    "SgCounters",
    "Upcall",
    "UpcallKind",
    "VifCounters",
    "adopt_mroute_socket",
    "open_mroute_socket",
]
