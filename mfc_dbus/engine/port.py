"""The engine's one way to the kernel: a port it is given (the real one below, built
from mfc_dbus.kernel; a fake in the engine's tests)."""

from __future__ import annotations

import logging
import socket
from typing import Protocol

from ..kernel import MrouteSocket, netlink
from ..kernel.membership import Memberships
from ..kernel.mfcdump import RawEntry, dump_raw
from ..kernel.netlink import LinkEvent, LinkMonitor
from ..model import Family
from .joins import MembershipKernel
from .sockets import KernelSockets, TableId

log = logging.getLogger(__name__)


class LinkWatcher(Protocol):
    """A subscription to link events, read when its file descriptor is readable."""

    def fileno(self) -> int: ...

    def read_events(self) -> list[LinkEvent]: ...

    def close(self) -> None: ...


class KernelPort(Protocol):
    def adopted_tables(self) -> list[TableId]:
        """The tables whose kernel socket outlived the previous process."""

    def open_table(self, family: Family, table: int) -> MrouteSocket:
        """The multicast-routing socket of a table: adopted, else opened (MRT_INIT).
        Raises KernelBusy, FamilyUnavailable or another MfcError."""

    def read_entries(self, family: Family) -> list[RawEntry]:
        """Every MFC entry of every table of `family` (one rtnetlink dump); OSError."""

    def watch_links(self) -> LinkWatcher:
        """Subscribe to link events (before `interface_indexes` is read); OSError."""

    def interface_indexes(self) -> dict[str, int]:
        """Interface name -> ifindex, for every interface of the namespace."""

    def ifindex(self, name: str) -> int | None:
        """The ifindex of one interface, None if it does not exist."""

    def memberships(self) -> MembershipKernel:
        """Where group joins are made (sockets that never receive the data)."""


class LinuxKernel:
    """The kernel port onto this namespace's kernel (mfc_dbus.kernel)."""

    def __init__(self, sockets: KernelSockets | None = None) -> None:
        self.sockets = sockets if sockets is not None else KernelSockets()

    def adopted_tables(self) -> list[TableId]:
        return self.sockets.adopted_tables

    def open_table(self, family: Family, table: int) -> MrouteSocket:
        return self.sockets.open(family, table)

    def read_entries(self, family: Family) -> list[RawEntry]:
        return dump_raw(family)

    def watch_links(self) -> LinkWatcher:
        return LinkMonitor()

    def interface_indexes(self) -> dict[str, int]:
        return netlink.interface_indexes()

    def memberships(self) -> MembershipKernel:
        sockets = self.sockets
        return Memberships(sockets.join_fds, sockets.keep, sockets.forget)

    def ifindex(self, name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None
