"""Value types and validation shared by every layer (no I/O here).

Addresses are packed bytes, 4 for IPv4 and 16 for IPv6, as the kernel takes them: they
hash and compare in C. Text is read by one parser (`_parse_prefix`, socket.inet_pton)
and written by socket.inet_ntop; prefixes are matched with integer masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import NamedTuple

from .errors import InvalidArgument

MAX_VIFS = 32  # MAXVIFS / MAXMIFS: per family and table
MAX_TABLE_ID = 2**32 - 1
IFNAMSIZ = 16  # including the terminating NUL


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @classmethod
    def parse(cls, text: str) -> Family:
        try:
            return cls(text.lower())
        except (ValueError, AttributeError):
            raise InvalidArgument(f"family {text!r} is not valid; use 'ipv4' or 'ipv6'") from None


# What the kernel calls the table used without MRT_TABLE: RT_TABLE_DEFAULT for IPMR,
# RT_TABLE_MAIN for IP6MR (ip6mr.c's RT6_TABLE_DFLT). Both are our table 0.
KERNEL_DEFAULT_TABLE = {Family.IPV4: 253, Family.IPV6: 254}
FAMILY_OF_SIZE = {4: Family.IPV4, 16: Family.IPV6}  # by a packed address's length


def check_table(table: object) -> None:
    if type(table) is not int or not 0 <= table <= MAX_TABLE_ID:  # bool is refused too
        raise InvalidArgument(
            f"table {table!r} is not valid; use 0 (the default table) to {MAX_TABLE_ID}"
        )


def validate_interface_name(name: str) -> str:
    """Check a Linux interface name as the kernel would (dev_valid_name); returns it."""
    if (
        type(name) is str
        and 0 < len(name) < IFNAMSIZ
        and name.isascii()
        and name.isprintable()  # of printable ASCII, only the space is whitespace
        and " " not in name
        and "/" not in name
        and ":" not in name
        and name not in (".", "..")
    ):
        return name
    _explain_interface_name(name)
    return name  # a valid name of a str subclass


def _explain_interface_name(name: object) -> None:
    if not isinstance(name, str):
        raise InvalidArgument(f"interface name {name!r} is not valid: it must be a string")
    if not name:
        raise InvalidArgument("interface name is empty; give a name such as 'eth0'")
    if name in (".", ".."):
        raise InvalidArgument(f"interface name {name!r} is not valid")
    if not name.isascii() or not name.isprintable():
        raise InvalidArgument(
            f"interface name {name!r} is not valid: use printable ASCII characters only"
        )
    if len(name) >= IFNAMSIZ:
        raise InvalidArgument(
            f"interface name {name!r} is too long: at most {IFNAMSIZ - 1} characters"
        )
    if " " in name or "/" in name or ":" in name:
        raise InvalidArgument(
            f"interface name {name!r} is not valid: no spaces, '/' or ':' allowed"
        )


def wildcard_stem(name: str) -> str | None:
    """smcroute's interface wildcard: "eth" for "eth+" (every interface whose name
    starts with eth), None for a plain name ("+" alone is one)."""
    if len(name) > 1 and name.endswith("+"):
        return name[:-1]
    return None


# -- addresses ------------------------------------------------------------------------
def format_address(packed: bytes) -> str:
    """An address as text (inet_ntop), from its 4 or 16 packed bytes."""
    return inet_ntop(AF_INET if len(packed) == 4 else AF_INET6, packed)


def format_prefix(packed: bytes, length: int) -> str:
    """'address/length', or the address alone for a host (the full length)."""
    text = inet_ntop(AF_INET if len(packed) == 4 else AF_INET6, packed)
    return text if length == 8 * len(packed) else f"{text}/{length}"


def _prefix_bits(packed: bytes, length: int) -> int:
    """The first `length` bits of `packed`, as an integer."""
    return int.from_bytes(packed) >> (8 * len(packed) - length)


def _host_bits(packed: bytes, length: int) -> int:
    """The bits of `packed` after the first `length` (zero for a network address)."""
    return int.from_bytes(packed) & ((1 << (8 * len(packed) - length)) - 1)


_EXAMPLES = {
    "group": "give a multicast address such as 232.1.1.1, 239.0.0.0/8 or ff3e::1",
    "source": "give a unicast address such as 192.0.2.1, a prefix such as 10.1.0.0/16, "
    "or '*' for any source",
}


def _parse_prefix(text: str, role: str) -> tuple[bytes, int]:
    """The packed address and prefix length of `text`, an IPv4 or IPv6 address with an
    optional '/length' (host bits are cleared, as smcroute does; masked_prefix names
    the result for a warning): the one reader of addresses. `role` ("group"
    or "source") names the value in the InvalidArgument raised."""
    address, slash, length_text = text.partition("/")
    try:
        packed = inet_pton(AF_INET6 if ":" in address else AF_INET, address)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        raise InvalidArgument(
            f"{role} {text!r} is not a valid address or prefix; {_EXAMPLES[role]}"
        ) from None
    if not slash:
        return packed, 8 * len(packed)
    bits = 8 * len(packed)
    if not (length_text.isascii() and length_text.isdigit()) or int(length_text) > bits:
        raise InvalidArgument(
            f"{role} {text!r} is not a valid prefix: the length after '/' must be 0 to {bits}"
        )
    length = int(length_text)
    if _host_bits(packed, length):  # smcroute's reading: 225.1.2.3/24 is 225.1.2.0/24
        packed = (_prefix_bits(packed, length) << (bits - length)).to_bytes(len(packed))
    return packed, length


def masked_prefix(text: str) -> str | None:
    """The network a prefix with host bits set is taken as ("225.1.2.3/24" ->
    "225.1.2.0/24"), for a warning; None for anything else (a plain address, a
    network prefix, text that is no prefix: its own reading names what is wrong)."""
    address, slash, length_text = text.strip().partition("/")
    if not slash or not (length_text.isascii() and length_text.isdigit()):
        return None
    try:
        packed = inet_pton(AF_INET6 if ":" in address else AF_INET, address)
    except (OSError, ValueError):
        return None
    length = int(length_text)
    if length > 8 * len(packed) or not _host_bits(packed, length):
        return None
    network = (_prefix_bits(packed, length) << (8 * len(packed) - length)).to_bytes(len(packed))
    return format_prefix(network, length)


def source_text(text: str) -> str:
    """A source as the service writes it (canonical text, '*' for any source)."""
    packed, length = _parse_source(text, 4)
    return format_prefix(packed, length) if length else "*"


def _parse_source(text: str, size: int) -> tuple[bytes, int]:
    """A source host or prefix; empty, '*', a /0 prefix or the unspecified address
    (0.0.0.0, ::, smcroute's "any source") is any source: the zero address of `size`
    bytes with length 0."""
    if type(text) is not str:
        raise InvalidArgument(f"source {text!r} is not valid: it must be a string")
    text = text.strip()
    if text == "*" or not text:
        return bytes(size), 0
    packed, length = _parse_prefix(text, "source")
    if not length or (length == 8 * len(packed) and not any(packed)):
        return bytes(size), 0  # a /0, or the unspecified address itself
    return packed, length


# -- route keys ---------------------------------------------------------------------
def _is_multicast(address: bytes) -> bool:
    """A packed IPv4 (224/4) or IPv6 (ff00::/8) multicast address; 4 or 16 bytes."""
    return 224 <= address[0] <= 239 if len(address) == 4 else address[0] == 0xFF


def _key_hash(
    table: int, sg: tuple[bytes, bytes], source_len: int, group_len: int, input: str
) -> int:
    """A RouteKey's hash: computed once, by RouteKey or by host_route."""
    return hash((table, sg, source_len, group_len, input))


@dataclass(frozen=True, slots=True, repr=False)
class RouteKey:
    """What identifies a route: (S,G) in a table, the family following the addresses.

    `sg` is the packed (source, group) network addresses, `source_len` and `group_len`
    their prefix lengths; any source is the zero address with length 0. For an exact
    route `sg` is how the kernel and the engine's tables know its entry. A key is valid
    by construction (__post_init__ refuses what the kernel would not forward);
    make_route_key reads one from text.

    `input` is part of a template's identity ((*,G) and prefix routes: one per input,
    each learned flow taking the one it arrives on) and always "" for an exact (S,G),
    which the kernel forwards from one input only. Route sets it from its own input.
    """

    table: int
    sg: tuple[bytes, bytes]
    source_len: int
    group_len: int
    input: str = ""
    # Computed once: a key is hashed several times on its way into the engine's maps.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every key of a batch or of the state file passes here: the usual key is
        # decided by the first test of each part (integer masks only for 224.x groups
        # and for prefixes).
        if type(self.sg) is not tuple or len(self.sg) != 2:
            raise InvalidArgument(f"{self.sg!r} is not a packed (source, group)")
        source, group = self.sg
        length = self.group_len
        size = len(group) if type(group) is bytes else 0
        bits = 8 * size
        if size == 4:
            if (
                type(length) is not int
                or not 4 <= length <= 32
                or not 224 <= group[0] <= 239
                or (group[0] == 224 and _within_link_local(group, length))
            ):
                raise _bad_group(group, length)
        elif (
            size != 16
            or type(length) is not int
            or not 16 <= length <= 128
            or group[0] != 0xFF
            or group[1] & 0x0F <= 2  # interface- or link-local scope
        ):
            raise _bad_group(group, length)
        if length != bits and _host_bits(group, length):
            raise _bad_group(group, length)
        length = self.source_len
        if (
            type(source) is not bytes
            or len(source) != size
            or type(length) is not int
            or not 0 <= length <= bits
            or (length != bits and _host_bits(source, length))
            or (length and _is_multicast(source))
        ):
            raise _bad_source(source, length, group)
        table = self.table
        if type(table) is not int or not 0 <= table <= MAX_TABLE_ID:
            check_table(table)
        if self.input and not self.is_template:
            raise InvalidArgument(
                f"an exact (S,G) key has no input (given {self.input!r}): the kernel forwards "
                "each (S,G) from one input, so the input is not part of its identity"
            )
        object.__setattr__(
            self, "_hash", _key_hash(table, self.sg, self.source_len, self.group_len, self.input)
        )

    def __hash__(self) -> int:
        return self._hash

    @property
    def source(self) -> bytes:
        return self.sg[0]

    @property
    def group(self) -> bytes:
        return self.sg[1]

    @property
    def family(self) -> Family:
        return FAMILY_OF_SIZE[len(self.sg[1])]

    @property
    def is_template(self) -> bool:
        """True for (*,G) and prefix routes, realised as exact (S,G) on upcalls."""
        bits = 8 * len(self.sg[1])
        return self.group_len != bits or self.source_len != bits

    @property
    def texts(self) -> tuple[str, str]:
        """(source, group) as the API and the state file write them ('*': any source).
        Every signal and state file record shows one: format_prefix, inline."""
        source, group = self.sg
        bits = 8 * len(group)
        family = AF_INET if bits == 32 else AF_INET6
        group_text = inet_ntop(family, group)
        if self.group_len != bits:
            group_text = f"{group_text}/{self.group_len}"
        if not self.source_len:
            return "*", group_text
        source_text = inet_ntop(family, source)
        if self.source_len != bits:
            source_text = f"{source_text}/{self.source_len}"
        return source_text, group_text

    def with_input(self, input: str) -> RouteKey:
        """This key of the template from `input` (of an exact (S,G): itself)."""
        if not self.is_template or input == self.input:
            return self
        return RouteKey(self.table, self.sg, self.source_len, self.group_len, input)

    def without_input(self) -> RouteKey:
        """This key whatever the input: what RemoveRoute names without one."""
        return self if not self.input else self.with_input("")

    def covers(self, source: bytes, group: bytes) -> bool:
        """Whether the flow (source, group), packed addresses, is within this key."""
        network_source, network_group = self.sg
        return (
            len(group) == len(network_group)
            and _prefix_bits(group, self.group_len) == _prefix_bits(network_group, self.group_len)
            and (
                not self.source_len
                or _prefix_bits(source, self.source_len)
                == _prefix_bits(network_source, self.source_len)
            )
        )

    def __str__(self) -> str:
        table = f" table {self.table}" if self.table else ""
        source, group = self.texts
        return f"({source}, {group}){table}"

    def __repr__(self) -> str:
        source, group = self.texts
        input = f", input={self.input!r}" if self.input else ""
        return f"make_route_key({source!r}, {group!r}, {self.table}{input})"


_KERNEL_DEFAULT_BY_SIZE = {
    4: KERNEL_DEFAULT_TABLE[Family.IPV4],
    16: KERNEL_DEFAULT_TABLE[Family.IPV6],
}


def make_route_key(source: str, group: str, table: int = 0, input: str = "") -> RouteKey:
    """The route key of text, as D-Bus calls, the state file and the client give it: a
    group address or prefix, a source address or prefix ('' or '*': any source).
    The kernel's id of the family's default table (253, 254) becomes 0. `input` is kept
    for a template only (RouteKey). Raises InvalidArgument naming the value."""
    if type(group) is not str:
        raise InvalidArgument(f"group {group!r} is not valid: it must be a string")
    if not (group := group.strip()):
        raise InvalidArgument(
            "group is empty; give a multicast address such as 232.1.1.1 or ff3e::1"
        )
    group_packed, group_len = _parse_prefix(group, "group")
    source_packed, source_len = _parse_source(source, len(group_packed))
    if table == _KERNEL_DEFAULT_BY_SIZE[len(group_packed)] and type(table) is int:
        table = 0
    key = RouteKey(table, (source_packed, group_packed), source_len, group_len)
    return key.with_input(input) if input else key


def _within_link_local(group: bytes, length: int) -> bool:
    """Whether an IPv4 group prefix overlaps 224.0.0.0/24, which the kernel never
    forwards."""
    overlap = min(length, 24)
    return _prefix_bits(group, overlap) == 0xE00000 >> (24 - overlap)


def _bad_group(group: object, length: object) -> InvalidArgument:
    """Why (group, length) is not a group the kernel forwards, for RouteKey."""
    if type(group) is not bytes or len(group) not in FAMILY_OF_SIZE or type(length) is not int:
        return InvalidArgument(f"group {group!r}/{length!r} is not a packed address and length")
    bits = 8 * len(group)
    if not 0 <= length <= bits or (length != bits and _host_bits(group, length)):
        return InvalidArgument(f"group {group!r}/{length!r} is not a network address and length")
    shown = format_prefix(group, length)
    if len(group) == 4 and length >= 4 and 224 <= group[0] <= 239:
        return InvalidArgument(
            f"group {shown!r} is link-local (224.0.0.0/24), which the kernel never forwards; "
            "use a routable group such as 232.1.1.1 or 239.1.1.1"
        )
    if len(group) == 16 and length >= 8 and group[0] == 0xFF:
        return InvalidArgument(
            f"group {shown!r} has interface- or link-local scope (ff01::/16, ff02::/16), "
            "which the kernel never forwards; use scope 3 or wider, such as ff05::1:3 "
            "or ff3e::1"
        )
    return InvalidArgument(
        f"group {shown!r} is not a multicast address; "
        "valid groups are in 224.0.0.0/4 (IPv4) or ff00::/8 (IPv6)"
    )


def _bad_source(source: object, length: object, group: bytes) -> InvalidArgument:
    """Why (source, length) is not a source of a route to `group`, for RouteKey."""
    if type(source) is bytes and len(source) in FAMILY_OF_SIZE and len(source) != len(group):
        return InvalidArgument(
            f"source {format_address(source)!r} and group {format_address(group)!r} are of "
            "different families; use two IPv4 or two IPv6 addresses"
        )
    bits = 8 * len(group)
    if (
        type(source) is not bytes
        or len(source) != len(group)
        or type(length) is not int
        or not 0 <= length <= bits
        or (length != bits and _host_bits(source, length))
    ):
        return InvalidArgument(
            f"source {source!r}/{length!r} is not a packed {FAMILY_OF_SIZE[len(group)]} "
            "network address and length (the zero address and 0 for any source)"
        )
    return InvalidArgument(
        f"source {format_prefix(source, length)!r} is a multicast address; a source "
        "must be a unicast sender address or prefix"
    )


# -- routes and VIFs ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Route:
    """A configured route: the desired state."""

    key: RouteKey
    input: str
    outputs: tuple[str, ...]
    persistent: bool = True
    owner: str | None = None  # unique bus name of the lease holder, if any
    origin: str | None = None  # "FILE:LINE" of a configuration file's route

    def __post_init__(self) -> None:
        key = self.key
        if isinstance(key, RouteKey) and key.input != self.input and key.is_template:
            object.__setattr__(self, "key", key.with_input(self.input))

    @property
    def interfaces(self) -> tuple[str, ...]:
        return (self.input, *self.outputs)


# The slots of RouteKey and Route, written directly by host_route (see there).
_new = object.__new__
_KEY_SLOTS = tuple(
    RouteKey.__dict__[n].__set__ for n in ("table", "sg", "source_len", "group_len", "input")
)
_SET_KEY_HASH = RouteKey.__dict__["_hash"].__set__
_ROUTE_SLOTS = tuple(
    Route.__dict__[n].__set__ for n in ("key", "input", "outputs", "persistent", "owner", "origin")
)


def host_route(
    base: RouteKey, source: bytes, input: str, outputs: tuple[str, ...]
) -> Route | None:
    """The persistent route of the host (source, group of `base`), or None when `source`
    is not a unicast host address of the group's family (make_route_key then says why).

    Restoring 100,000 routes builds 200,000 objects: this skips the checks already
    known to pass. `base` is a valid exact-group key with any source (its group and
    table are checked), the source is checked here, and `input` and `outputs` must be
    checked by the caller (check_interfaces); the result equals
    Route(RouteKey(base.table, (source, group), bits, bits), input, outputs).
    """
    group = base.sg[1]
    size = len(group)
    if (
        type(source) is not bytes
        or len(source) != size
        or base.group_len != 8 * size
        or base.source_len
        or not any(source)
        or _is_multicast(source)
    ):
        return None
    table_set, sg_set, source_len_set, group_len_set, input_set = _KEY_SLOTS
    key = _new(RouteKey)
    sg = (source, group)
    bits = 8 * size
    table = base.table
    table_set(key, table)
    sg_set(key, sg)
    source_len_set(key, bits)
    group_len_set(key, bits)
    input_set(key, "")
    _SET_KEY_HASH(key, _key_hash(table, sg, bits, bits, ""))
    key_set, route_input_set, outputs_set, persistent_set, owner_set, origin_set = _ROUTE_SLOTS
    route = _new(Route)
    key_set(route, key)
    route_input_set(route, input)
    outputs_set(route, outputs)
    persistent_set(route, True)
    owner_set(route, None)
    origin_set(route, None)
    return route


@dataclass(frozen=True, slots=True)
class VifKey:
    """What identifies a VIF/MIF: an interface in a family's table. Valid by
    construction."""

    family: Family
    table: int
    interface: str

    def __post_init__(self) -> None:
        if not isinstance(self.family, Family):
            raise InvalidArgument(f"family {self.family!r} is not valid; use 'ipv4' or 'ipv6'")
        check_table(self.table)
        validate_interface_name(self.interface)


@dataclass(frozen=True, slots=True)
class VifConfig:
    """An explicitly configured VIF/MIF (AddVif)."""

    interface: str
    family: Family
    table: int = 0
    ttl_threshold: int = 1
    persistent: bool = True
    origin: str | None = None  # "FILE:LINE" of a configuration file's phyint
    mrdisc: bool = False  # RFC 4286 multicast router discovery on the interface

    @property
    def key(self) -> VifKey:
        """The VIF this configures (InvalidArgument if the interface, family or table is
        not valid)."""
        return VifKey(self.family, self.table, self.interface)


class Counters(NamedTuple):
    """An MFC entry's counters (a tuple: made per listed row, from the kernel's)."""

    packets: int = 0
    bytes: int = 0
    wrong_if: int = 0


class RouteStatus(NamedTuple):
    """A route as ListRoutes reports it: the desired route plus what is installed (a
    tuple: one is made per listed row)."""

    route: Route
    state: str  # "installed", "pending" or "learned"
    counters: Counters = Counters()
    missing_interfaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
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
    mrdisc: bool = False
