"""Group memberships (IGMP / MLD joins) held by a pool of drop-all UDP sockets.

A membership makes the kernel report the group on an interface, so that
IGMP/MLD-snooping switches send the group's traffic to it. The kernel keeps a
membership as long as the socket that made it, and limits what one socket holds
(measured on Linux 6.18):

- IPv4: net.ipv4.igmp_max_memberships groups per socket (20), then ENOBUFS;
  net.ipv4.igmp_max_msf sources per group and socket (10), then ENOBUFS.
- IPv6: no count of groups; the socket's option memory (net.core.optmem_max,
  131072: 2340 groups) runs out with ENOMEM; net.ipv6.mld_max_msf sources per group
  and socket (64), then ENOBUFS.
- A source-specific join on a socket holding the any-source join of the same group
  and interface silently turns it into a join of that source only; the reverse is
  EADDRINUSE. The two never share a socket here.
- After the interface is deleted the socket still holds the entry: MCAST_LEAVE_GROUP
  frees it, MCAST_LEAVE_SOURCE_GROUP fails with ENODEV.

So memberships go to as many sockets as they need (joinsocket.JoinSocket), opened
when needed and closed when empty. Every method raises a typed error from
mfc_dbus.errors; none returns an error code.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from ..errors import AlreadyExists, MfcError, NotFound
from ..model import Family
from .joinsocket import (
    JoinLimits,
    JoinSocket,
    Membership,
    SocketFull,
    attach_drop_all_filter,
    open_join_socket,
)

__all__ = [
    "JoinLimits",
    "Membership",
    "Memberships",
    "attach_drop_all_filter",
    "open_join_socket",
    "read_limits",
]

_LIMIT_SYSCTLS = {
    Family.IPV4: ("net/ipv4/igmp_max_memberships", "net/ipv4/igmp_max_msf", 20, 10),
    Family.IPV6: (None, "net/ipv6/mld_max_msf", None, 64),
}


def read_limits(family: Family) -> JoinLimits:
    """The limits of this network namespace's sysctls (their defaults when unreadable).
    A refusal the sysctls do not predict (optmem) is learned when it happens."""
    groups_sysctl, sources_sysctl, groups_default, sources_default = _LIMIT_SYSCTLS[family]
    return JoinLimits(
        _read_sysctl(groups_sysctl, groups_default),
        _read_sysctl(sources_sysctl, sources_default),
    )


def _read_sysctl(name: str | None, default: int | None) -> int | None:
    if name is None:
        return default
    try:
        with open(f"/proc/sys/{name}") as file:
            return int(file.read())
    except (OSError, ValueError):
        return default


# -- one family ---------------------------------------------------------------------------
class _FamilyPool:
    def __init__(self, family: Family) -> None:
        self.family = family
        self.limits = read_limits(family)
        self.sockets: list[JoinSocket] = []
        self.where: dict[Membership, JoinSocket] = {}

    def join(self, m: Membership) -> None:
        if m in self.where:
            raise AlreadyExists(f"join {m}: already joined")
        for candidate in self._candidates(m):
            try:
                candidate.join(m)
            except SocketFull:
                continue
            except MfcError:
                self._close_empty(candidate)
                raise
            self.where[m] = candidate
            return
        raise AssertionError("the last candidate is a fresh socket, which raises")

    def _candidates(self, m: Membership) -> Iterator[JoinSocket]:
        """Sockets that may take `m`, best first; a new socket last."""
        key = (m.ifindex, m.group)
        if m.source is not None:  # add to a source list already there: no group slot
            yield from (s for s in self.sockets if s.takes_source(key, m.source))
        yield from (s for s in self.sockets if key not in s.groups and s.has_room())
        fresh = JoinSocket(self.family, self.limits)
        self.sockets.append(fresh)
        yield fresh

    def leave(self, m: Membership) -> None:
        holder = self.where.get(m)
        if holder is None:
            raise NotFound(f"leave {m}: not joined")
        try:
            dropped = holder.leave(m)
        except MfcError:
            del self.where[m]  # not held any more, or in doubt: never left twice
            raise
        finally:
            self._close_empty(holder)
        for membership in dropped:
            self.where.pop(membership, None)

    def leave_interface(self, ifindex: int) -> list[Membership]:
        dropped: list[Membership] = []
        for holder in list(self.sockets):
            for membership in holder.leave_interface(ifindex):
                self.where.pop(membership, None)
                dropped.append(membership)
            self._close_empty(holder)
        return dropped

    def _close_empty(self, holder: JoinSocket) -> None:
        if not holder.groups:
            holder.close()
            self.sockets.remove(holder)

    def close(self) -> None:
        for holder in self.sockets:
            holder.close()
        self.sockets.clear()
        self.where.clear()


# -- the public face ----------------------------------------------------------------------
class Memberships:
    """Every membership of this process, IPv4 and IPv6. Sockets are opened when needed,
    in the network namespace of the calling thread, and closed when they hold nothing."""

    def __init__(self) -> None:
        self._pools: dict[Family, _FamilyPool] = {}

    def join(self, membership: Membership) -> None:
        """AlreadyExists when joined already, NoSuchInterface when the interface is gone,
        LimitExceeded when no more sockets can be opened, KernelError otherwise."""
        pool = self._pools.get(membership.family)
        if pool is None:
            pool = self._pools[membership.family] = _FamilyPool(membership.family)
        pool.join(membership)

    def leave(self, membership: Membership) -> None:
        """NotFound when not joined. Works after the interface is gone."""
        pool = self._pools.get(membership.family)
        if pool is None:
            raise NotFound(f"leave {membership}: not joined")
        pool.leave(membership)

    def leave_interface(self, ifindex: int) -> list[Membership]:
        """Leave everything on interface `ifindex` (e.g. after it was removed: the
        sockets keep entries for it until left); returns what was left."""
        dropped: list[Membership] = []
        for pool in self._pools.values():
            dropped.extend(pool.leave_interface(ifindex))
        return dropped

    def __contains__(self, membership: object) -> bool:
        return any(membership in pool.where for pool in self._pools.values())

    def __len__(self) -> int:
        return sum(len(pool.where) for pool in self._pools.values())

    def memberships(self) -> set[Membership]:
        return {m for pool in self._pools.values() for m in pool.where}

    def sockets(self, family: Family) -> list[socket.socket]:
        """The join sockets of `family` now open (for inspection; do not close them)."""
        pool = self._pools.get(family)
        return [holder.sock for holder in pool.sockets] if pool else []

    def close(self) -> None:
        """Close every socket: the kernel leaves every group."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def __enter__(self) -> Memberships:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
