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

A restart keeps the memberships: each socket is handed to a keeper (the service
stores it in systemd's fd store under FDNAME join-<family>-<n>) and told when it
closes (FDSTOREREMOVE); the next process adopts the sockets passed back. No public
interface lists what a socket holds, so the previous process's record says which
groups to ask about, and the kernel answers for each (getsockopt MCAST_MSFILTER: the
any-source join or the sources held, or nothing). What the record names and the
socket holds is adopted; a join then wanted takes it over without a syscall (no
IGMP/MLD leave or report), and what is no longer wanted is left (settle_adopted). A
socket that holds none of what the record names, or that no record names, is closed
and removed from the store, which leaves whatever it held.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator

from ..errors import AlreadyExists, MfcError, NotFound
from ..model import Family
from .joinsocket import (
    JoinLimits,
    JoinSocket,
    Membership,
    SocketFull,
    attach_drop_all_filter,
    held_sources,
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

log = logging.getLogger(__name__)

JOIN_FD_PREFIX = "join-"
Keep = Callable[[int, str], bool]  # (fd, name) -> stored outside this process
Forget = Callable[[str], None]  # the stored socket of that name is closed


def _keep_nothing(fd: int, name: str) -> bool:
    return False


def _forget_nothing(name: str) -> None:
    pass


def join_fd_name(family: Family, number: int) -> str:
    return f"{JOIN_FD_PREFIX}{family.value}-{number}"


def parse_join_fd_name(name: str) -> tuple[Family, int] | None:
    """(family, number) of a name join_fd_name made, else None."""
    if not name.startswith(JOIN_FD_PREFIX):
        return None
    family_text, _, number = name[len(JOIN_FD_PREFIX) :].partition("-")
    if not number.isdigit():
        return None
    try:
        return Family.parse(family_text), int(number)
    except ValueError:
        return None


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
    def __init__(self, family: Family, keep: Keep, forget: Forget) -> None:
        self.family = family
        self.limits = read_limits(family)
        self.sockets: list[JoinSocket] = []
        self.where: dict[Membership, JoinSocket] = {}
        self.unclaimed: set[Membership] = set()  # adopted, not joined by this process yet
        self._keep, self._forget = keep, forget
        self._numbers = 0  # the next socket's number in its FDNAME

    def join(self, m: Membership) -> None:
        if m in self.unclaimed:  # an adopted socket holds it: nothing on the wire
            self.unclaimed.discard(m)
            return
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
            if not candidate.stored:
                candidate.stored = self._keep(candidate.sock.fileno(), candidate.name)
            return
        raise AssertionError("the last candidate is a fresh socket, which raises")

    def _candidates(self, m: Membership) -> Iterator[JoinSocket]:
        """Sockets that may take `m`, best first; a new socket last."""
        key = (m.ifindex, m.group)
        if m.source is not None:  # add to a source list already there: no group slot
            yield from (s for s in self.sockets if s.takes_source(key, m.source))
        yield from (s for s in self.sockets if key not in s.groups and s.has_room())
        fresh = JoinSocket(self.family, self.limits, join_fd_name(self.family, self._numbers))
        self._numbers += 1
        self.sockets.append(fresh)
        yield fresh

    def adopt(
        self, name: str, number: int, sock: socket.socket, recorded: list[Membership]
    ) -> None:
        """Take over a socket of the previous process, holding what it holds of
        `recorded` (asked of the kernel); closed if it holds none of it."""
        self._numbers = max(self._numbers, number + 1)
        holder = JoinSocket(self.family, self.limits, name, sock)
        holder.stored = True  # it came from the store
        for key in dict.fromkeys((m.ifindex, m.group) for m in recorded):
            try:
                sources = held_sources(sock, self.family, *key)
            except NotFound:
                continue
            holder.groups[key] = sources
            for source in sources or (None,):
                membership = Membership(key[0], key[1], source)
                self.where[membership] = holder
                self.unclaimed.add(membership)
        self.sockets.append(holder)
        if not holder.groups:
            log.warning("closing the join socket %s passed back: it holds none of the "
                        "groups recorded for it", name)  # fmt: skip
            self._close_empty(holder)

    def settle(self) -> list[Membership]:
        """Leave what was adopted and nobody joined again."""
        left = []
        for membership in sorted(self.unclaimed, key=str):
            self.unclaimed.discard(membership)
            try:
                self.leave(membership)
            except MfcError as exc:
                log.warning("leave %s: %s", membership, exc)
                continue
            left.append(membership)
        return left

    def leave(self, m: Membership) -> None:
        holder = self.where.get(m)
        if holder is None or m in self.unclaimed:
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
            self.unclaimed.discard(membership)

    def leave_interface(self, ifindex: int) -> list[Membership]:
        dropped: list[Membership] = []
        for holder in list(self.sockets):
            for membership in holder.leave_interface(ifindex):
                self.where.pop(membership, None)
                if membership in self.unclaimed:
                    self.unclaimed.discard(membership)
                else:
                    dropped.append(membership)
            self._close_empty(holder)
        return dropped

    def _close_empty(self, holder: JoinSocket) -> None:
        if not holder.groups:
            self._close(holder)
            self.sockets.remove(holder)

    def _close(self, holder: JoinSocket) -> None:
        holder.close()
        if holder.stored:
            self._forget(holder.name)  # the stored copy would keep its memberships

    def holdings(self) -> dict[str, list[Membership]]:
        held: dict[str, list[Membership]] = {holder.name: [] for holder in self.sockets}
        for membership, holder in self.where.items():
            held[holder.name].append(membership)
        return held

    def close(self) -> None:
        for holder in self.sockets:
            self._close(holder)
        self.sockets.clear()
        self.where.clear()
        self.unclaimed.clear()


# -- the public face ----------------------------------------------------------------------
class Memberships:
    """Every membership of this process, IPv4 and IPv6. Sockets are opened when needed,
    in the network namespace of the calling thread, and closed when they hold nothing.
    `passed` are join sockets of a previous process by FDNAME (adopted by `adopt`);
    `keep(fd, name)` is told of each new socket, `forget(name)` of each closed one."""

    def __init__(
        self,
        passed: dict[str, int] | None = None,
        keep: Keep = _keep_nothing,
        forget: Forget = _forget_nothing,
    ) -> None:
        self._pools: dict[Family, _FamilyPool] = {}
        self._passed = dict(passed or {})
        self._keep, self._forget = keep, forget
        self.version = 0  # counts changes of what the sockets hold (for the record)

    def _pool(self, family: Family) -> _FamilyPool:
        pool = self._pools.get(family)
        if pool is None:
            pool = self._pools[family] = _FamilyPool(family, self._keep, self._forget)
        return pool

    def join(self, membership: Membership) -> None:
        """AlreadyExists when joined already, NoSuchInterface when the interface is gone,
        LimitExceeded when no more sockets can be opened, KernelError otherwise."""
        self._pool(membership.family).join(membership)
        self.version += 1

    def adopt(self, recorded: dict[str, list[Membership]]) -> None:
        """Take over the sockets passed at construction, with what `recorded` (by
        FDNAME, from the previous process) says they hold and they still hold."""
        passed, self._passed = self._passed, {}
        for name, fd in sorted(passed.items()):
            parsed = parse_join_fd_name(name)
            sock = _as_join_socket(fd, parsed[0] if parsed else None)
            if parsed is None or sock is None or name not in recorded:
                log.warning("closing the join socket %s passed back: no record of what "
                            "it holds", name)  # fmt: skip
                if sock is not None:
                    sock.close()
                self._forget(name)
                continue
            try:
                self._pool(parsed[0]).adopt(name, parsed[1], sock, recorded[name])
            except MfcError as exc:
                log.warning("closing the join socket %s passed back: %s", name, exc)
                sock.close()
                self._forget(name)
        self.version += 1

    def settle_adopted(self) -> list[Membership]:
        """Leave what the adopted sockets hold and no join took over since `adopt`."""
        left = [m for pool in self._pools.values() for m in pool.settle()]
        self.version += 1
        return left

    def holdings(self) -> dict[str, list[Membership]]:
        """What each socket holds, by FDNAME (for the next process's `adopt`)."""
        return {name: held for pool in self._pools.values()
                for name, held in pool.holdings().items()}  # fmt: skip

    def leave(self, membership: Membership) -> None:
        """NotFound when not joined. Works after the interface is gone."""
        pool = self._pools.get(membership.family)
        if pool is None:
            raise NotFound(f"leave {membership}: not joined")
        self.version += 1
        pool.leave(membership)

    def leave_interface(self, ifindex: int) -> list[Membership]:
        """Leave everything on interface `ifindex` (e.g. after it was removed: the
        sockets keep entries for it until left); returns what was left."""
        dropped: list[Membership] = []
        for pool in self._pools.values():
            dropped.extend(pool.leave_interface(ifindex))
        self.version += 1
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
        for name, fd in self._passed.items():  # never adopted
            os.close(fd)
            self._forget(name)
        self._passed.clear()
        self.version += 1

    def __enter__(self) -> Memberships:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _as_join_socket(fd: int, family: Family | None) -> socket.socket | None:
    """The UDP socket of `family` on `fd`, else None (and `fd` closed)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    expected = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    if family is None or sock.family != expected or sock.type != socket.SOCK_DGRAM:
        sock.close()
        return None
    return sock
