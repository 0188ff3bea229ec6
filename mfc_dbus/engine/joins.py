"""Group joins: the desired joins, and the kernel memberships that realise them.

A join names an interface, a group or group prefix, optionally a source or source
prefix, and a table. The kernel joins single groups from single sources, so a join
stands for every (source, group) pair its prefixes cover, on every interface its
name matches: "225.1.2.0/30" is four memberships, "source 192.0.2.0/31 group
232.1.1.0/31" four source-specific ones, "eth+" every interface whose name starts
with "eth" (smcroute's wildcard). A join covers at most MAX_MEMBERSHIPS_PER_JOIN
pairs, and all joins together hold at most MAX_MEMBERSHIPS kernel memberships: each
IPv4 socket holds only 20 groups, so these bound the sockets (file descriptors) too.

Joins follow interfaces: a join whose interface is missing waits for it, is joined
when it appears and left when it goes. Two joins that cover the same membership (say
"225.1.2.0/30" and "225.1.2.1", or the same join in two tables) share it; it is left
when the last of them goes. No D-Bus and no sockets here: the kernel side is any
MembershipKernel (mfc_dbus.kernel.membership.Memberships in the service).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast

from ..errors import (
    AlreadyExists,
    InvalidArgument,
    LimitExceeded,
    MfcError,
    NoSuchInterface,
    NotFound,
)
from ..kernel.membership import Membership
from ..kernel.netlink import LinkEvent
from ..model import MAX_TABLE_ID, Family, make_route_key, validate_interface_name, wildcard_stem

# The kernel joins single (source, group) pairs: a join iterates its prefixes' members.
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger(__name__)

MAX_MEMBERSHIPS_PER_JOIN = 1024  # e.g. a /22 of IPv4 groups, or a /118 of IPv6 groups
MAX_MEMBERSHIPS = 4096  # all joins together: at 20 per IPv4 socket, ~205 descriptors


class MembershipKernel(Protocol):
    """What the manager needs of the kernel layer (Memberships implements it)."""

    def join(self, membership: Membership) -> None: ...

    def leave(self, membership: Membership) -> None: ...

    def leave_interface(self, ifindex: int) -> list[Membership]: ...

    def close(self) -> None: ...

    # A restart keeps the memberships (the sockets outlive the process): adopt what
    # the previous process recorded, then leave what no join took over.
    version: int  # counts changes of `holdings`

    def adopt(self, recorded: dict[str, list[Membership]]) -> None: ...

    def settle_adopted(self) -> list[Membership]: ...

    def holdings(self) -> dict[str, list[Membership]]: ...


@dataclass(frozen=True, slots=True)
class JoinKey:
    """What identifies a join. Checked when made: an instance is always valid."""

    interface: str  # a name, or a wildcard such as eth+ (model.wildcard_stem)
    family: Family
    table: int
    source: IPNetwork | None  # None: any source
    group: IPNetwork

    def __post_init__(self) -> None:
        _check_key(self)

    @property
    def is_wildcard(self) -> bool:
        return wildcard_stem(self.interface) is not None

    def matches(self, name: str) -> bool:
        stem = wildcard_stem(self.interface)
        if stem is not None:
            return name.startswith(stem)
        return name == self.interface

    @property
    def size(self) -> int:
        """How many (source, group) memberships the join makes on each interface."""
        sources = self.source.num_addresses if self.source is not None else 1
        return self.group.num_addresses * sources

    def memberships(self, ifindex: int) -> Iterator[Membership]:
        sources: list[IPAddress | None] = [None]
        if self.source is not None:
            sources = cast(list[IPAddress | None], list(self.source))
        for group in self.group:
            for source in sources:
                yield Membership(ifindex, group, source)

    @property
    def texts(self) -> tuple[str, str]:
        """(source, group) as the API writes them ('*': any source)."""
        return _text(self.source), _text(self.group)

    def __str__(self) -> str:
        table = f" table {self.table}" if self.table else ""
        source, group = self.texts
        return f"({source}, {group}) on {self.interface}{table}"


def _check_key(key: JoinKey) -> None:
    validate_interface_name(key.interface)
    stem = wildcard_stem(key.interface)
    if stem is not None:
        validate_interface_name(stem)
    if not isinstance(key.family, Family):
        raise InvalidArgument(f"family {key.family!r} is not valid; use 'ipv4' or 'ipv6'")
    if not isinstance(key.table, int) or isinstance(key.table, bool):
        raise InvalidArgument(f"table {key.table!r} is not valid; use 0 to {MAX_TABLE_ID}")
    if not 0 <= key.table <= MAX_TABLE_ID:
        raise InvalidArgument(f"table {key.table} is not valid; use 0 to {MAX_TABLE_ID}")
    network = ipaddress.IPv4Network if key.family is Family.IPV4 else ipaddress.IPv6Network
    if not isinstance(key.group, network):
        raise InvalidArgument(f"group {key.group!r} is not an {key.family} address or prefix")
    if not key.group.network_address.is_multicast:
        raise InvalidArgument(f"group {key.group} is not a multicast address or prefix")
    if key.source is not None:
        _check_source(key, network)
    if key.size > MAX_MEMBERSHIPS_PER_JOIN:
        raise LimitExceeded(
            f"join {key} stands for {key.size} memberships (every source and group its "
            f"prefixes cover); at most {MAX_MEMBERSHIPS_PER_JOIN} per join: use longer "
            "prefixes or several joins"
        )


def _check_source(key: JoinKey, network: type) -> None:
    source = key.source
    assert source is not None
    if not isinstance(source, network):
        raise InvalidArgument(
            f"source {source!r} and group {key.group} are of different families; "
            "use two IPv4 or two IPv6 addresses"
        )
    if source.network_address.is_multicast:
        raise InvalidArgument(f"source {source} is a multicast address; a source is a sender")
    if source.network_address.is_unspecified:
        raise InvalidArgument(
            f"source prefix {source} covers the unspecified address; give the senders' "
            "prefix, or no source for an any-source join"
        )


def make_join_key(interface: str, source: str, group: str, table: int = 0) -> JoinKey:
    """Parse a join as written (addresses as text; '' or '*' for any source). The
    unspecified source (0.0.0.0, ::) means any source, as in smcroute."""
    parsed = make_route_key(source, group, table)
    group_net = ipaddress.ip_network((int.from_bytes(parsed.group), parsed.group_len))
    source_net = None
    if parsed.source_len:
        source_net = ipaddress.ip_network((int.from_bytes(parsed.source), parsed.source_len))
        if source_net.num_addresses == 1 and source_net.network_address.is_unspecified:
            source_net = None
    return JoinKey(interface, parsed.family, parsed.table, source_net, group_net)


def _text(network: IPNetwork | None) -> str:
    """'*' for any source, the address alone for a host, else the prefix."""
    if network is None:
        return "*"
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


@dataclass(frozen=True, slots=True)
class Join:
    """A desired join."""

    key: JoinKey
    persistent: bool = True  # kept across restarts
    owner: str | None = None  # the unique bus name of a lease holder, if any
    origin: str | None = None  # "FILE:LINE" of a configuration file's mgroup


class JoinState(StrEnum):
    JOINED = "joined"  # joined on every interface its name matches, and one matches
    WAITING = "waiting"  # no interface matches its name now
    FAILED = "failed"  # the kernel refused it on some interface (see error)


@dataclass(frozen=True, slots=True)
class JoinStatus:
    join: Join
    state: JoinState
    interfaces: tuple[str, ...]  # where it is joined now
    memberships: int  # kernel memberships it stands for now
    error: str | None = None


class JoinManager:
    """The desired joins and their kernel memberships. Call interface_appeared and
    interface_disappeared from link events; every call runs on the caller's thread."""

    def __init__(self, kernel: MembershipKernel, interfaces: Mapping[str, int] = {}) -> None:
        self._kernel = kernel
        self._interfaces: dict[str, int] = dict(interfaces)  # name -> ifindex, live now
        self._joins: dict[JoinKey, Join] = {}
        self._held: dict[JoinKey, dict[str, int]] = {}  # joined on name -> ifindex
        self._errors: dict[JoinKey, dict[str, str]] = {}  # name -> why the kernel refused
        self._users: dict[Membership, set[JoinKey]] = {}  # kernel membership -> joins
        # Told of every join added and removed, whatever the cause (signals, state file).
        self.on_joined: Callable[[Join], None] = _ignore
        self.on_left: Callable[[Join], None] = _ignore

    # -- desired state ---------------------------------------------------------------------
    def add(self, join: Join) -> JoinStatus:
        """Add a join and join it where its interface exists (all or nothing): raises
        AlreadyExists, LimitExceeded or the kernel's error; a missing interface waits."""
        key = join.key
        if not isinstance(key, JoinKey):
            raise InvalidArgument(f"join key {key!r} is not a JoinKey")
        if key in self._joins:
            raise AlreadyExists(f"join {key} exists already; leave it first to change it")
        names = [name for name in self._interfaces if key.matches(name)]
        self._check_total(key, names)
        done: list[str] = []
        try:
            for name in names:
                if self._acquire(key, name, self._interfaces[name]):
                    done.append(name)
        except MfcError:
            for name in done:
                self._release(key, name)
            raise
        self._joins[key] = join
        log.info("join %s: %s", key, self._status(key).state)
        self.on_joined(join)
        return self._status(key)

    def remove(self, key: JoinKey) -> Join:
        """Leave and forget a join; NotFound when there is none with this key."""
        join = self._joins.get(key)
        if join is None:
            raise NotFound(f"no join {key} is configured")
        for name in list(self._held.get(key, {})):
            self._release(key, name)
        del self._joins[key]
        self._held.pop(key, None)
        self._errors.pop(key, None)
        log.info("leave %s", key)
        self.on_left(join)
        return join

    def remove_owned_by(self, owner: str) -> list[Join]:
        """Remove the joins leased by `owner` (a bus name that left the bus)."""
        return [self.remove(k) for k, join in list(self._joins.items()) if join.owner == owner]

    def flush(self, family: Family | None = None, table: int | None = None) -> list[Join]:
        return [self.remove(key) for key in list(self._joins) if _selected(key, family, table)]

    # -- interfaces ------------------------------------------------------------------------
    def interface_appeared(self, name: str, ifindex: int) -> list[JoinStatus]:
        """An interface exists (RTM_NEWLINK, also for a mere state change): join what
        waits for it, and retry what the kernel refused on it. Returns the statuses
        that changed; a refusal is logged and reported, never raised."""
        changed: set[JoinKey] = set()
        old = self._interfaces.get(name)
        if old is not None and old != ifindex:  # a new interface under an old name
            changed.update(self._gone(name, old))
        for other, index in list(self._interfaces.items()):
            if index == ifindex and other != name:  # renamed
                changed.update(self._gone(other, index))
        self._interfaces[name] = ifindex
        for key in self._joins:
            if not key.matches(name) or name in self._held.get(key, {}):
                continue
            before = self._status(key)
            try:
                self._check_total(key, [name])
                self._acquire(key, name, ifindex)
            except MfcError as exc:
                self._errors.setdefault(key, {})[name] = exc.message
                log.warning("join %s on %s (index %d) failed: %s", key, name, ifindex, exc)
            if self._status(key) != before:
                changed.add(key)
        return [self._status(key) for key in self._joins if key in changed]

    def interface_disappeared(self, name: str, ifindex: int) -> list[JoinStatus]:
        """An interface is gone (RTM_DELLINK): its joins wait for it to come back."""
        if self._interfaces.get(name) != ifindex:
            return []
        changed = self._gone(name, ifindex)
        return [self._status(key) for key in self._joins if key in changed]

    def _gone(self, name: str, ifindex: int) -> set[JoinKey]:
        del self._interfaces[name]
        changed: set[JoinKey] = set()
        held_any = False
        for key in self._joins:
            held = self._held.get(key, {})
            if held.pop(name, None) is not None:
                changed.add(key)
                held_any = True
                for membership in key.memberships(ifindex):
                    self._forget_user(key, membership)
            if self._errors.get(key, {}).pop(name, None) is not None:
                changed.add(key)
        if held_any:
            # The device took its memberships with it, but the sockets list them (and
            # keep room for them) until they are left: leave them all at once.
            try:
                self._kernel.leave_interface(ifindex)
            except MfcError as exc:
                log.warning("leaving the groups of %s (index %d): %s", name, ifindex, exc)
        return changed

    # -- queries ---------------------------------------------------------------------------
    def get(self, key: JoinKey) -> JoinStatus:
        if key not in self._joins:
            raise NotFound(f"no join {key} is configured")
        return self._status(key)

    def list_joins(
        self,
        family: Family | None = None,
        table: int | None = None,
        interface: str | None = None,
    ) -> list[JoinStatus]:
        """Joins in the order they were added; `interface` selects the joins whose name
        matches it (a wildcard join is listed under each matching name)."""
        return [
            self._status(key)
            for key in self._joins
            if _selected(key, family, table) and (interface is None or key.matches(interface))
        ]

    def joins(self) -> list[Join]:
        """Every desired join (the persistent ones go to the state file)."""
        return list(self._joins.values())

    @property
    def membership_count(self) -> int:
        """Kernel memberships held now."""
        return len(self._users)

    def close(self) -> None:
        """Close the kernel side (every group is left); the desired joins stay."""
        self._kernel.close()
        self._held.clear()
        self._errors.clear()
        self._users.clear()

    # -- kernel memberships ----------------------------------------------------------------
    def _check_total(self, key: JoinKey, names: list[str]) -> None:
        needed = sum(
            1
            for name in names
            for membership in key.memberships(self._interfaces[name])
            if membership not in self._users
        )
        if len(self._users) + needed > MAX_MEMBERSHIPS:
            raise LimitExceeded(
                f"join {key} needs {needed} more memberships; {len(self._users)} of at most "
                f"{MAX_MEMBERSHIPS} are held: leave unused joins first"
            )

    def _acquire(self, key: JoinKey, name: str, ifindex: int) -> bool:
        """Join every membership of `key` on `name`, or none: True when joined, False
        when the interface is gone meanwhile (its link event follows)."""
        used: list[Membership] = []
        try:
            for membership in key.memberships(ifindex):
                users = self._users.get(membership)
                if users is None:
                    self._kernel.join(membership)
                    self._users[membership] = {key}
                else:
                    users.add(key)
                used.append(membership)
        except NoSuchInterface:
            for membership in used:
                self._drop_user(key, membership)
            log.info("join %s: %s is gone, waiting for it", key, name)
            return False
        except BaseException:
            for membership in used:
                self._drop_user(key, membership)
            raise
        self._held.setdefault(key, {})[name] = ifindex
        errors = self._errors.get(key)
        if errors is not None:
            errors.pop(name, None)
        return True

    def _release(self, key: JoinKey, name: str) -> None:
        ifindex = self._held[key].pop(name)
        for membership in key.memberships(ifindex):
            self._drop_user(key, membership)

    def _drop_user(self, key: JoinKey, membership: Membership) -> None:
        """`key` no longer uses `membership`: leave it when nobody else does."""
        if self._forget_user(key, membership):
            try:
                self._kernel.leave(membership)
            except NotFound:
                pass  # already gone with its interface
            except MfcError as exc:
                log.warning("leave %s: %s", membership, exc)

    def _forget_user(self, key: JoinKey, membership: Membership) -> bool:
        """Drop `key` from the users of `membership`; True when it was the last one."""
        users = self._users.get(membership)
        if users is None:
            return False
        users.discard(key)
        if users:
            return False
        del self._users[membership]
        return True

    def _status(self, key: JoinKey) -> JoinStatus:
        held = self._held.get(key, {})
        errors = self._errors.get(key, {})
        if errors:
            state = JoinState.FAILED
        elif held:
            state = JoinState.JOINED
        else:
            state = JoinState.WAITING
        error = "; ".join(f"{name}: {text}" for name, text in sorted(errors.items())) or None
        return JoinStatus(
            self._joins[key], state, tuple(sorted(held)), key.size * len(held), error
        )


def _ignore(join: Join) -> None:
    pass


def _selected(key: JoinKey, family: Family | None, table: int | None) -> bool:
    return (family is None or key.family is family) and (table is None or key.table == table)


def follow_interface(manager: JoinManager, event: LinkEvent) -> None:
    """Joins follow interfaces: a link event for the manager."""
    if event.kind == "del":
        manager.interface_disappeared(event.name, event.index)
    else:
        manager.interface_appeared(event.name, event.index)
