"""One join socket: memberships (IGMP / MLD joins) on an unbound UDP socket that
never holds data, and the Membership value type.

The socket is never bound, so no datagram is delivered to it; it also carries a
"drop everything" socket filter and the smallest receive buffer. What one socket
holds is limited (see membership.py); a refusal for that reason is SocketFull, so
that the caller tries another socket. Every other refusal is a typed error from
mfc_dbus.errors.
"""

from __future__ import annotations

import errno as errno_codes
import ipaddress
import os
import socket
from dataclasses import dataclass

from ..errors import (
    AlreadyExists,
    InvalidArgument,
    KernelError,
    LimitExceeded,
    MfcError,
    NoSuchInterface,
    NotFound,
)
from ..model import Family
from . import abi
from .abi import ffi

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LEVEL = {Family.IPV4: socket.IPPROTO_IP, Family.IPV6: socket.IPPROTO_IPV6}
_SOCKET_FAMILY = {Family.IPV4: socket.AF_INET, Family.IPV6: socket.AF_INET6}
_FULL = (errno_codes.ENOBUFS, errno_codes.ENOMEM)
_LIMIT_NAMES = {
    Family.IPV4: "net.ipv4.igmp_max_memberships, net.ipv4.igmp_max_msf, net.core.optmem_max",
    Family.IPV6: "net.ipv6.mld_max_msf, net.core.optmem_max",
}


@dataclass(frozen=True, slots=True)
class Membership:
    """One kernel membership: `group` on interface `ifindex`, from any source (None)
    or from `source` only. Checked when made: an instance is always valid."""

    ifindex: int
    group: IPAddress
    source: IPAddress | None = None

    def __post_init__(self) -> None:
        _check_membership(self)

    @property
    def family(self) -> Family:
        return Family.IPV4 if self.group.version == 4 else Family.IPV6

    def __str__(self) -> str:
        source = "*" if self.source is None else str(self.source)
        return f"({source}, {self.group}) on interface index {self.ifindex}"


def _check_membership(m: Membership) -> None:
    if not isinstance(m.ifindex, int) or isinstance(m.ifindex, bool) or m.ifindex <= 0:
        raise InvalidArgument(
            f"interface index {m.ifindex!r} is not valid; a join needs the index (1 or more) "
            "of an existing interface"
        )
    if not isinstance(m.group, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise InvalidArgument(f"group {m.group!r} is not an IPv4 or IPv6 address")
    if not m.group.is_multicast:
        raise InvalidArgument(
            f"group {m.group} is not a multicast address; valid groups are in 224.0.0.0/4 "
            "(IPv4) or ff00::/8 (IPv6)"
        )
    if m.source is None:
        return
    if not isinstance(m.source, type(m.group)):
        raise InvalidArgument(
            f"source {m.source!r} and group {m.group} are of different families; "
            "use two IPv4 or two IPv6 addresses"
        )
    if m.source.is_multicast or m.source.is_unspecified:
        raise InvalidArgument(
            f"source {m.source} is not a unicast sender address; give the sender's address, "
            "or no source for an any-source join"
        )


# -- the drop-all socket filter -----------------------------------------------------------
def attach_drop_all_filter(sock: socket.socket) -> None:
    """Attach the one-instruction classic BPF program "ret 0": every packet is dropped
    before it reaches the socket's receive queue."""
    program = ffi.new("struct sock_filter[1]")
    program[0].code = abi.BPF_RET_K
    program[0].k = 0
    fprog = ffi.new("struct sock_fprog *")
    fprog.len = 1
    fprog.filter = program
    sock.setsockopt(socket.SOL_SOCKET, abi.SO_ATTACH_FILTER, ffi.buffer(fprog))


def open_join_socket(family: Family) -> socket.socket:
    """An unbound UDP socket with the drop-all filter and the smallest receive buffer."""
    try:
        sock = socket.socket(_SOCKET_FAMILY[family], socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except OSError as exc:
        if exc.errno in (errno_codes.EMFILE, errno_codes.ENFILE):
            raise LimitExceeded(
                f"cannot open another {family} join socket: {exc.strerror}; raise the "
                "open-file limit (LimitNOFILE=) or join fewer groups"
            ) from None
        raise KernelError(
            f"cannot open a {family} join socket: {exc.strerror}", exc.errno
        ) from None
    try:
        attach_drop_all_filter(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)  # the kernel's minimum
    except OSError as exc:
        sock.close()
        raise KernelError(
            f"cannot prepare a {family} join socket: {exc.strerror}", exc.errno
        ) from None
    return sock


# -- requests ---------------------------------------------------------------------------
def _fill_address(storage, address: IPAddress) -> None:
    if address.version == 4:
        sin = ffi.cast("struct sockaddr_in *", ffi.addressof(storage))
        sin.sin_family = socket.AF_INET
        ffi.memmove(ffi.addressof(sin, "sin_addr"), address.packed, 4)
    else:
        sin6 = ffi.cast("struct sockaddr_in6 *", ffi.addressof(storage))
        sin6.sin6_family = socket.AF_INET6
        ffi.memmove(ffi.addressof(sin6, "sin6_addr"), address.packed, 16)


def _group_request(ifindex: int, group: IPAddress):
    req = ffi.new("struct group_req *")
    req.gr_interface = ifindex
    _fill_address(req.gr_group, group)
    return req


def _source_request(ifindex: int, group: IPAddress, source: IPAddress):
    req = ffi.new("struct group_source_req *")
    req.gsr_interface = ifindex
    _fill_address(req.gsr_group, group)
    _fill_address(req.gsr_source, source)
    return req


def _read_address(storage, family: Family) -> IPAddress:
    if family is Family.IPV4:
        sin = ffi.cast("struct sockaddr_in *", ffi.addressof(storage))
        return ipaddress.IPv4Address(bytes(ffi.buffer(ffi.addressof(sin, "sin_addr"), 4)))
    sin6 = ffi.cast("struct sockaddr_in6 *", ffi.addressof(storage))
    return ipaddress.IPv6Address(bytes(ffi.buffer(ffi.addressof(sin6, "sin6_addr"), 16)))


_SLIST = ffi.offsetof("struct group_filter", "gf_slist")
_STORAGE = ffi.sizeof("struct __kernel_sockaddr_storage")


def held_sources(
    sock: socket.socket, family: Family, ifindex: int, group: IPAddress, room: int = 64
) -> set[IPAddress] | None:
    """What `sock` holds of `group` on `ifindex`, asked of the kernel (getsockopt
    MCAST_MSFILTER): None for an any-source join, the sources of a source-specific one;
    NotFound when it holds no membership of that group there."""
    buffer = ffi.new("char[]", _SLIST + room * _STORAGE)
    request = ffi.cast("struct group_filter *", buffer)
    request.gf_interface = ifindex
    _fill_address(request.gf_group, group)
    request.gf_numsrc = room
    length = ffi.new("uint32_t *", len(buffer))
    if abi.libc.getsockopt(sock.fileno(), _LEVEL[family], abi.MCAST_MSFILTER, buffer, length):
        code = ffi.errno
        if code in (errno_codes.EADDRNOTAVAIL, errno_codes.ENODEV):
            raise NotFound(f"the join socket holds nothing of {group} on interface index "
                           f"{ifindex}")  # fmt: skip
        raise KernelError(f"cannot read the memberships of a join socket: {os.strerror(code)}",
                          code)  # fmt: skip
    count = request.gf_numsrc
    if count > room:
        return held_sources(sock, family, ifindex, group, count)
    if request.gf_fmode == abi.MCAST_EXCLUDE and count == 0:
        return None
    if request.gf_fmode != abi.MCAST_INCLUDE or count == 0:  # never made here; nothing
        raise NotFound(f"the join socket holds no join of {group} on interface index "
                       f"{ifindex} made by this service")  # fmt: skip
    slist = ffi.cast("struct __kernel_sockaddr_storage *", request.gf_slist)  # `room` long
    return {_read_address(slist[n], family) for n in range(count)}


# -- limits -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinLimits:
    """What one socket holds before the kernel refuses more (None: no count limit)."""

    groups_per_socket: int | None
    sources_per_group: int | None


# -- one socket ---------------------------------------------------------------------------
GroupKey = tuple[int, IPAddress]  # (ifindex, group)


class SocketFull(Exception):
    """This socket cannot take the membership; another one may."""


class JoinSocket:
    """One socket and what it holds: (ifindex, group) -> None for an any-source join,
    or the set of sources of its source-specific join."""

    def __init__(
        self, family: Family, limits: JoinLimits, name: str, sock: socket.socket | None = None
    ) -> None:
        self.family = family
        self.name = name  # what systemd's fd store knows it as (FDNAME)
        self.sock = sock if sock is not None else open_join_socket(family)
        self.stored = False  # handed to systemd's fd store
        self.groups: dict[GroupKey, set[IPAddress] | None] = {}
        self.group_limit = limits.groups_per_socket
        self.source_limit = limits.sources_per_group
        self.full_groups: set[GroupKey] = set()  # refused one more source (learned)

    def has_room(self) -> bool:
        return self.group_limit is None or len(self.groups) < self.group_limit

    def takes_source(self, key: GroupKey, source: IPAddress) -> bool:
        sources = self.groups.get(key)
        if sources is None or source in sources or key in self.full_groups:
            return False
        return self.source_limit is None or len(sources) < self.source_limit

    def join(self, m: Membership) -> None:
        key = (m.ifindex, m.group)
        new_group = key not in self.groups
        if m.source is None:
            option, req = abi.MCAST_JOIN_GROUP, _group_request(m.ifindex, m.group)
        else:
            option = abi.MCAST_JOIN_SOURCE_GROUP
            req = _source_request(m.ifindex, m.group, m.source)
        try:
            self.sock.setsockopt(_LEVEL[self.family], option, ffi.buffer(req))
        except OSError as exc:
            if new_group and m.source is not None:
                self._drop_group(key)  # the kernel may have kept an empty source list
            if exc.errno in _FULL:
                self._learn_full(key, new_group, exc)
                raise SocketFull from None
            raise _join_error(exc, m) from None
        sources = self.groups.get(key)
        if m.source is None:
            self.groups[key] = None
        elif sources is None:  # a new source list (an any-source entry never gets here)
            self.groups[key] = {m.source}
        else:
            sources.add(m.source)

    def _learn_full(self, key: GroupKey, new_group: bool, exc: OSError) -> None:
        if new_group:
            if not self.groups:
                raise KernelError(
                    f"a fresh {self.family} join socket refuses a group: {exc.strerror}; "
                    f"the per-socket limits allow none: check {_LIMIT_NAMES[self.family]}",
                    exc.errno,
                )
            self.group_limit = len(self.groups)
        else:
            self.full_groups.add(key)

    def leave(self, m: Membership) -> list[Membership]:
        """Leave `m`; returns the memberships this dropped (more than `m` only when the
        interface is gone and the kernel can leave only the whole group)."""
        key = (m.ifindex, m.group)
        sources = self.groups[key]
        if sources is None or sources == {m.source}:
            self._leave_group(key, m)
            return [m]
        assert m.source is not None
        req = _source_request(m.ifindex, m.group, m.source)
        try:
            self.sock.setsockopt(
                _LEVEL[self.family], abi.MCAST_LEAVE_SOURCE_GROUP, ffi.buffer(req)
            )
        except OSError as exc:
            if exc.errno != errno_codes.ENODEV:
                sources.discard(m.source)  # not held (NotFound) or in doubt: forget it
                raise _leave_error(exc, m) from None
            dropped = [Membership(m.ifindex, m.group, source) for source in sources]
            self._leave_group(key, m)  # the interface is gone: free the whole entry
            return dropped
        sources.discard(m.source)
        self.full_groups.discard(key)
        return [m]

    def _leave_group(self, key: GroupKey, m: Membership) -> None:
        req = _group_request(*key)
        del self.groups[key]
        self.full_groups.discard(key)
        try:
            self.sock.setsockopt(_LEVEL[self.family], abi.MCAST_LEAVE_GROUP, ffi.buffer(req))
        except OSError as exc:
            raise _leave_error(exc, m) from None

    def _drop_group(self, key: GroupKey) -> None:
        req = _group_request(*key)
        try:
            self.sock.setsockopt(_LEVEL[self.family], abi.MCAST_LEAVE_GROUP, ffi.buffer(req))
        except OSError:
            pass  # nothing was left behind

    def leave_interface(self, ifindex: int) -> list[Membership]:
        dropped: list[Membership] = []
        for key in [key for key in self.groups if key[0] == ifindex]:
            sources = self.groups.pop(key)
            self.full_groups.discard(key)
            self._drop_group(key)
            for source in sources or (None,):
                dropped.append(Membership(key[0], key[1], source))
        return dropped

    def close(self) -> None:
        self.sock.close()


def _join_error(exc: OSError, m: Membership) -> MfcError:
    code = exc.errno or 0
    text = os.strerror(code)
    if code == errno_codes.ENODEV:
        return NoSuchInterface(f"join {m}: no interface has this index (was it removed?)")
    if code in (errno_codes.EADDRINUSE, errno_codes.EADDRNOTAVAIL):
        return AlreadyExists(f"join {m}: already joined")
    if code == errno_codes.EINVAL:
        return InvalidArgument(f"join {m}: the kernel refused it as invalid ({text})")
    return KernelError(f"join {m}: {text} (errno {code})", code)


def _leave_error(exc: OSError, m: Membership) -> MfcError:
    code = exc.errno or 0
    if code in (errno_codes.EADDRNOTAVAIL, errno_codes.EINVAL):
        return NotFound(f"leave {m}: the kernel holds no such membership")
    return KernelError(f"leave {m}: {os.strerror(code)} (errno {code})", code)
