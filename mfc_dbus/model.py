"""Value types and validation shared by every layer (no I/O here)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from socket import AF_INET, inet_ntoa, inet_pton
from typing import Any

from .errors import InvalidArgument

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_VIFS = 32  # MAXVIFS / MAXMIFS: per family and table
MAX_TABLE_ID = 2**32 - 1
IFNAMSIZ = 16  # including the terminating NUL
_IFNAME_FORBIDDEN = re.compile(r"[\s/:]")

IPV4_LINK_LOCAL_GROUPS = ipaddress.IPv4Network("224.0.0.0/24")
IPV4_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
IPV6_MULTICAST = ipaddress.IPv6Network("ff00::/8")


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @classmethod
    def parse(cls, text: str) -> Family:
        try:
            return cls(text.lower())
        except ValueError:
            raise InvalidArgument(f"family {text!r} is not valid; use 'ipv4' or 'ipv6'") from None

    @classmethod
    def of(cls, value: IPNetwork | IPAddress) -> Family:
        return cls.IPV4 if value.version == 4 else cls.IPV6


_valid_names: set[str] = set()  # names that passed, bounded: a host has few interfaces


def validate_interface_name(name: str) -> str:
    """Check a Linux interface name as the kernel would (dev_valid_name)."""
    if type(name) is str and name in _valid_names:
        return name
    _check_interface_name(name)
    if len(_valid_names) >= 4096:
        _valid_names.clear()
    _valid_names.add(name)
    return name


def _check_interface_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgument("interface name is empty; give a name such as 'eth0'")
    if name in (".", ".."):
        raise InvalidArgument(f"interface name {name!r} is not valid")
    if not name.isascii() or not name.isprintable():
        raise InvalidArgument(
            f"interface name {name!r} is not valid: use printable ASCII characters only"
        )
    if len(name.encode()) >= IFNAMSIZ:
        raise InvalidArgument(
            f"interface name {name!r} is too long: at most {IFNAMSIZ - 1} characters"
        )
    if _IFNAME_FORBIDDEN.search(name):
        raise InvalidArgument(
            f"interface name {name!r} is not valid: no spaces, '/' or ':' allowed"
        )


# Parsed groups by text (a few groups carry many routes): the network and, for a host
# group, its packed address. Bounded, never errors.
_group_cache: dict[str, tuple[IPNetwork, bytes | None]] = {}
_CACHE_LIMIT = 4096


def parse_group(text: str) -> IPNetwork:
    """A multicast group address or prefix, routable by the kernel."""
    return _parse_group_cached(text)[0]


def _parse_group_cached(text: str) -> tuple[IPNetwork, bytes | None]:
    if type(text) is str:
        found = _group_cache.get(text)
        if found is not None:
            return found
    group = _parse_group(text)
    packed = group.network_address.packed if is_exact(group) else None
    if len(_group_cache) >= _CACHE_LIMIT:
        _group_cache.clear()
    found = _group_cache[text] = (group, packed)
    return found


def check_multicast_group(group: IPNetwork, shown: str) -> None:
    """Refuse a group the kernel would not forward; `shown` is how the message names it."""
    if not group.is_multicast:
        raise InvalidArgument(
            f"group {shown} is not a multicast address; "
            "valid groups are in 224.0.0.0/4 (IPv4) or ff00::/8 (IPv6)"
        )
    if group.version == 4 and group.overlaps(IPV4_LINK_LOCAL_GROUPS):
        raise InvalidArgument(
            f"group {shown} is link-local (224.0.0.0/24), which the kernel never forwards; "
            "use a routable group such as 232.1.1.1 or 239.1.1.1"
        )
    if group.version == 6:
        scope = group.network_address.packed[1] & 0x0F
        if group.prefixlen < 16 or scope <= 2:
            raise InvalidArgument(
                f"group {shown} has interface- or link-local scope (ff01::/16, ff02::/16), "
                "which the kernel never forwards; use scope 3 or wider, such as ff05::1:3 "
                "or ff3e::1"
            )


def _parse_group(text: str) -> IPNetwork:
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(
            "group is empty; give a multicast address such as 232.1.1.1 or ff3e::1"
        )
    try:
        group = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidArgument(
            f"group {text!r} is not a valid address or prefix ({exc}); "
            "give a multicast address such as 232.1.1.1, 239.0.0.0/8 or ff3e::1"
        ) from None
    check_multicast_group(group, repr(text))
    return group


def parse_source(text: str) -> IPNetwork | None:
    """A source host or prefix; empty or '*' means any source (None)."""
    return _parse_source_packed(text)[0]


def _parse_source_packed(text: str) -> tuple[IPNetwork | None, bytes | None]:
    """The source and, when the fast path for an IPv4 host knows it, its packed address."""
    if not isinstance(text, str):
        raise InvalidArgument("source must be a string")
    text = text.strip()
    if text in ("", "*"):
        return None, None
    if "/" not in text:  # fast path for the common case, an IPv4 unicast host
        try:
            packed = inet_pton(AF_INET, text)
        except OSError:
            packed = b""
        if packed and not 224 <= packed[0] < 240:
            return ipaddress.IPv4Network((int.from_bytes(packed, "big"), 32)), packed
    try:
        source = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidArgument(
            f"source {text!r} is not a valid address or prefix ({exc}); give a unicast "
            "address such as 192.0.2.1, a prefix such as 10.1.0.0/16, or '*' for any source"
        ) from None
    if source.network_address.is_multicast:
        raise InvalidArgument(
            f"source {text!r} is a multicast address; a source must be a unicast sender "
            "address or prefix"
        )
    if source.prefixlen == 0:
        return None, None
    return source, None


def format_source(source: IPNetwork | None) -> str:
    if source is None:
        return "*"
    if source.prefixlen == source.max_prefixlen:
        return str(source.network_address)
    return str(source)


def format_group(group: IPNetwork) -> str:
    if group.prefixlen == group.max_prefixlen:
        return str(group.network_address)
    return str(group)


_group_texts: dict[int, tuple[IPNetwork, str]] = {}


def _group_text(group: IPNetwork) -> str:
    # By identity: parsed groups are shared objects and hashing a network is slow. The
    # entry keeps its group alive, so the id cannot be reused while it is a key.
    found = _group_texts.get(id(group))
    if found is not None and found[0] is group:
        return found[1]
    if len(_group_texts) >= _CACHE_LIMIT:
        _group_texts.clear()
    text = format_group(group)
    _group_texts[id(group)] = (group, text)
    return text


def is_exact(network: IPNetwork | None) -> bool:
    return network is not None and network.prefixlen == network.max_prefixlen


class _computed_once:  # noqa: N801 (used like functools.cached_property)
    """functools.cached_property without its lock: Python 3.11 takes an RLock for every
    first computation, which costs more than these values (a batch makes 10,000 keys).
    A non-data descriptor: once stored in the instance dict, that is found first."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.function(instance)
        return value


@dataclass(frozen=True)
class RouteKey:
    """What identifies a route: (S,G) per family and table."""

    family: Family
    table: int
    source: IPNetwork | None  # None: any source, (*,G)
    group: IPNetwork

    @_computed_once
    def is_template(self) -> bool:
        """True for (*,G) and prefix routes, realised as exact (S,G) on upcalls."""
        return not (is_exact(self.source) and is_exact(self.group))

    @_computed_once
    def sg(self) -> tuple[bytes, bytes]:
        """The packed (source, group) addresses of an exact route: how the engine and the
        kernel know its entry. Bytes hash in C; ipaddress objects hash in slow Python."""
        return (self.source.network_address.packed, self.group.network_address.packed)

    @_computed_once
    def texts(self) -> tuple[str, str]:
        """(source, group) as format_source and format_group write them, computed once:
        signals, the state file and logs show every key."""
        if self.family is Family.IPV4 and not self.is_template:
            source = inet_ntoa(self.sg[0])  # str() of an ipaddress object is slow Python
        else:
            source = format_source(self.source)
        return source, _group_text(self.group)

    def __str__(self) -> str:
        table = f" table {self.table}" if self.table else ""
        source, group = self.texts
        return f"({source}, {group}){table}"

    def __hash__(self) -> int:
        # Keys index the engine's tables and are hashed many times per route; the hash of
        # an ipaddress network is slow Python, so compute it once per key, and for an
        # exact (S,G) from the packed addresses (equal keys: equal table and packed pair).
        try:
            return self.__dict__["_hash"]
        except KeyError:
            pass
        try:
            exact = not self.is_template
            value = hash((self.table, self.sg)) if exact else None
        except (AttributeError, TypeError):  # not a valid key: the engine refuses it
            value = None
        if value is None:
            value = hash((self.family, self.table, self.source, self.group))
        object.__setattr__(self, "_hash", value)
        return value

    def __getstate__(self) -> dict:
        # A cached hash must not travel to another process (str hashes are salted).
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "is_template")}


@dataclass(frozen=True)
class Route:
    """A configured route: the desired state."""

    key: RouteKey
    input: str
    outputs: tuple[str, ...]
    persistent: bool = True
    owner: str | None = None  # unique bus name of the lease holder, if any
    origin: str | None = None  # "FILE:LINE" of a configuration file's route

    @property
    def interfaces(self) -> tuple[str, ...]:
        return (self.input, *self.outputs)


@dataclass(frozen=True)
class VifConfig:
    """An explicitly configured VIF/MIF (AddVif)."""

    interface: str
    family: Family
    table: int = 0
    ttl_threshold: int = 1
    persistent: bool = True
    origin: str | None = None  # "FILE:LINE" of a configuration file's phyint


@dataclass(frozen=True)
class Counters:
    packets: int = 0
    bytes: int = 0
    wrong_if: int = 0


@dataclass(frozen=True)
class RouteStatus:
    """A route as ListRoutes reports it: the desired route plus what is installed."""

    route: Route
    state: str  # "installed", "pending" or "learned"
    counters: Counters = field(default_factory=Counters)
    missing_interfaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class VifStatus:
    interface: str
    family: Family
    table: int
    index: int | None  # None while the interface is missing
    ttl_threshold: int
    explicit: bool  # configured by AddVif (else allocated for routes)
    in_packets: int = 0
    out_packets: int = 0
    in_bytes: int = 0
    out_bytes: int = 0


PARSED_MARK = "_parsed"  # set on keys made by make_route_key, which checked them


def make_route_key(source: str, group: str, table: int = 0) -> RouteKey:
    """Parse and cross-check a (source, group) pair into a RouteKey."""
    group_net, group_packed = _parse_group_cached(group)
    source_net, source_packed = _parse_source_packed(source)
    if source_net is not None and source_net.version != group_net.version:
        raise InvalidArgument(
            f"source {source!r} and group {group!r} are of different families; "
            "use two IPv4 or two IPv6 addresses"
        )
    family = Family.IPV4 if group_net.version == 4 else Family.IPV6
    key = RouteKey(family, normalize_table(table, family), source_net, group_net)
    if source_packed is not None and group_packed is not None:
        # Known already: spare the ipaddress properties behind these cached values.
        key.__dict__["is_template"] = False
        key.__dict__["sg"] = (source_packed, group_packed)
    key.__dict__[PARSED_MARK] = True  # every check of engine/validate.check_key passed
    return key


# What the kernel calls the table used without MRT_TABLE: RT_TABLE_DEFAULT for IPMR,
# RT_TABLE_MAIN for IP6MR (ip6mr.c's RT6_TABLE_DFLT). Both are our table 0.
KERNEL_DEFAULT_TABLE = {Family.IPV4: 253, Family.IPV6: 254}


def normalize_table(table: int, family: Family) -> int:
    """Check a table id; the kernel's id of the family's default table becomes 0."""
    if not isinstance(table, int) or isinstance(table, bool) or not 0 <= table <= MAX_TABLE_ID:
        raise InvalidArgument(
            f"table {table!r} is not valid; use 0 (the default table) to {MAX_TABLE_ID}"
        )
    return 0 if table == KERNEL_DEFAULT_TABLE[family] else table
