"""Multicast-routing sockets (IPv4 IPMR and IPv6 IP6MR): the part both families share.

One socket per family and kernel table: it owns that table for as long as it is
open, and closing it flushes every VIF and MFC entry the kernel holds for it.
Addresses are packed bytes (4 for IPv4, 16 for IPv6), as the kernel takes them.
Every method raises a typed error from mfc_dbus.errors; none returns an error code.
This module has the socket's lifetime (open, adopt, close), the MFC entry's hot path
and the upcalls' draining; each family's structs are in mroute_families.py.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from ..errors import FamilyUnavailable, InvalidArgument, MfcError, NoSuchInterface, from_errno
from ..model import Family, format_address
from . import abi
from .abi import ffi
from .sgcounters import Counts, read_sg_counters

log = logging.getLogger(__name__)

_UPCALL_BUFSIZE = 65536

# Upcalls queue in the socket's receive buffer and the kernel drops what does not fit.
# Measured on Linux 6.18 (tests/kernel/test_rcvbuf.py): each NOCACHE upcall, IPv4 or
# IPv6, is an skb of truesize 832 bytes, so the default 212,992-byte buffer holds 256
# of them. A burst of 10,000 new (S,G) needs 8,320,000 bytes; the kernel doubles the
# value asked for (its bookkeeping share), which leaves 2x headroom for a kernel whose
# skbs are larger and for real IGMP/MLD packets queued to the same socket.
RECEIVE_BUFFER = 10_000 * 832
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # not in Python's socket module
_rcvbuf_fallback_logged = False

# Encoded (parent, outputs) parts of the MFC struct a socket keeps: routes share a few
# combinations, and encoding one through cffi costs more than the setsockopt (10,000
# add_mfc: about 400,000/s with the memo, 217,000/s encoding each). Past the bound (a
# caller inventing combinations) the memo starts again.
ROUTE_MEMO_LIMIT = 4096


class UpcallKind(IntEnum):
    NOCACHE = abi.MSG_NOCACHE
    WRONGVIF = abi.MSG_WRONGVIF
    WHOLEPKT = abi.MSG_WHOLEPKT
    WRVIFWHOLE = abi.MSG_WRVIFWHOLE


@dataclass(frozen=True, slots=True)
class Upcall:
    """A message from the kernel's multicast routing code (not a real IGMP/MLD packet)."""

    kind: UpcallKind
    family: Family
    table: int
    source: bytes  # packed
    group: bytes  # packed
    vif: int

    def __str__(self) -> str:
        return (
            f"{self.kind.name} ({format_address(self.source)}, {format_address(self.group)}) "
            f"on VIF {self.vif}"
        )


@dataclass(frozen=True, slots=True)
class SgCounters:
    packets: int
    bytes: int
    wrong_if: int


@dataclass(frozen=True, slots=True)
class VifCounters:
    in_packets: int
    out_packets: int
    in_bytes: int
    out_bytes: int


class MrouteSocket:
    """Common part of the IPv4 and IPv6 multicast-routing sockets."""

    family: Family
    _socket_family: int
    _protocol: int
    _level: int
    _address_size: int

    def __init__(self, table: int = 0, *, adopt_fd: int | None = None) -> None:
        """Open and initialise the table's socket, or with `adopt_fd` take over one that
        is already initialised (kept open meanwhile, e.g. by systemd's fd store): the
        kernel's table, its VIFs and MFC entries, stays as it is."""
        self.table = table
        self.adopted = adopt_fd is not None
        if adopt_fd is not None:
            self._sock = self._adopt(adopt_fd)
            self._raise_receive_buffer()  # kept on the socket; a no-op unless it shrank
        else:
            try:
                self._sock = socket.socket(self._socket_family, socket.SOCK_RAW, self._protocol)
            except OSError as exc:
                raise self._unavailable(exc) from None
            try:
                self._configure_socket()
                self._raise_receive_buffer()
                if table:
                    self._setsockopt(abi.MRT_TABLE, struct.pack("I", table), "select table")
                self._setsockopt(abi.MRT_INIT, struct.pack("i", 1), "take the multicast table")
            except Exception:
                self._sock.close()
                raise
        self._sock.setblocking(False)
        self._mfc = ffi.new(self._mfc_type + " *")
        self._mfc_buf = ffi.buffer(self._mfc)
        self._prepare_mfc(self._mfc)
        self._routes: dict[tuple, bytes] = {}  # see ROUTE_MEMO_LIMIT
        self._closed = False

    # -- helpers -----------------------------------------------------------------
    def _adopt(self, fd: int) -> socket.socket:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise MfcError(f"cannot adopt file descriptor {fd}: {exc.strerror}") from None
        if (sock.family, sock.type, sock.proto) != (
            self._socket_family, socket.SOCK_RAW, self._protocol
        ):  # fmt: skip
            sock.detach()
            raise MfcError(f"file descriptor {fd} is not a {self.family} multicast-routing socket")
        return sock

    def _describe(self, what: str) -> str:
        table = f" in {self.family} table {self.table}" if self.table else f" ({self.family})"
        return what + table

    def _setsockopt(self, option: int, value: bytes | memoryview, what: str) -> None:
        try:
            self._sock.setsockopt(self._level, option, value)
        except OSError as exc:
            raise self._failed(exc, what) from None

    def _failed(self, exc: OSError, what: str) -> MfcError:
        """The typed error of a failed kernel call doing `what`."""
        return from_errno(exc.errno or errno.EIO, self._describe(what))

    def _unavailable(self, exc: OSError) -> FamilyUnavailable:
        return FamilyUnavailable(
            f"the kernel offers no {self.family} multicast routing socket: {exc.strerror}"
        )

    def _packed(self, address: bytes, role: str) -> bytes:
        if type(address) is not bytes or len(address) != self._address_size:
            raise InvalidArgument(
                f"{role} {address_text(address)} is not an {self.family} address; "
                f"this socket is {self.family}"
            )
        return address

    def _configure_socket(self) -> None:
        """Family-specific socket options applied before MRT_INIT."""

    def _raise_receive_buffer(self) -> None:
        """Give the socket room for a burst of 10,000 queued upcalls (RECEIVE_BUFFER).

        SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN; without it,
        SO_RCVBUF gets what rmem_max allows (logged once per process, at debug).
        """
        global _rcvbuf_fallback_logged
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
            return
        except OSError as exc:
            refused = exc
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass  # the default buffer still works; bursts beyond it are dropped
        if not _rcvbuf_fallback_logged:
            _rcvbuf_fallback_logged = True
            log.debug(
                "SO_RCVBUFFORCE refused (%s); upcall buffer limited by net.core.rmem_max: "
                "%d bytes",
                refused.strerror,
                self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            )

    def _prepare_mfc(self, ctl) -> None:
        """Set the fields of the reused MFC struct that never change."""

    # -- public API ------------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def set_assert(self, enabled: bool) -> None:
        """Enable WRONGVIF upcalls (MRT_ASSERT) for packets arriving on a wrong interface
        that is one of the entry's outputs."""
        self._setsockopt(abi.MRT_ASSERT, struct.pack("i", int(enabled)), "set assert mode")

    def set_pim(self, enabled: bool) -> None:
        """PIM mode (MRT_PIM / MRT6_PIM): WRONGVIF upcalls for packets arriving on any
        wrong VIF, at most one per entry every 3 s. The kernel sets assert mode to the
        same value."""
        self._setsockopt(abi.MRT_PIM, struct.pack("i", int(enabled)), "set PIM mode")

    def add_mfc(
        self, source: bytes, group: bytes, parent: int, outputs: dict[int, int] | Iterable[int]
    ) -> None:
        """Add or replace (in place, without a gap) the MFC entry (source, group).

        `outputs` maps output VIF -> TTL threshold, or is an iterable of VIFs (threshold 1).
        """
        # The hot path of every batch: one memoized bytes slice for (parent, outputs), two
        # address slices, one setsockopt. Wrong-family addresses fail the slice length.
        key = (parent, tuple(outputs.items() if isinstance(outputs, dict) else outputs))
        route_bytes = self._routes.get(key) or self._encode_route(key, parent, outputs)
        buf = self._mfc_buf
        try:
            buf[self._origin_slice] = source
            buf[self._group_slice] = group
        except (TypeError, ValueError):
            self._set_addresses(buf, source, group)
        buf[self._route_slice] = route_bytes
        try:
            self._sock.setsockopt(self._level, abi.MRT_ADD_MFC, buf)
        except OSError as exc:
            what = f"add MFC ({address_text(source)}, {address_text(group)}) input VIF {parent}"
            raise self._failed(exc, what) from None

    def _set_addresses(self, buf, source: bytes, group: bytes) -> None:
        buf[self._origin_slice] = self._packed(source, "source")
        buf[self._group_slice] = self._packed(group, "group")

    def _encode_route(
        self, key: tuple, parent: int, outputs: dict[int, int] | Iterable[int]
    ) -> bytes:
        """The bytes from the parent field to the end of the outputs field, kept (see
        ROUTE_MEMO_LIMIT)."""
        check_vif(parent)
        ctl = ffi.new(self._mfc_type + " *")
        self._fill_route(ctl, parent, outputs)
        route_bytes = bytes(ffi.buffer(ctl)[self._route_slice])
        if len(self._routes) >= ROUTE_MEMO_LIMIT:
            self._routes.clear()
        self._routes[key] = route_bytes
        return route_bytes

    def del_mfc(self, source: bytes, group: bytes) -> None:
        buf = self._mfc_buf
        self._set_addresses(buf, source, group)
        try:
            self._sock.setsockopt(self._level, abi.MRT_DEL_MFC, buf)
        except OSError as exc:
            what = f"delete MFC ({address_text(source)}, {address_text(group)})"
            raise self._failed(exc, what) from None

    def read_upcalls(self) -> list[Upcall]:
        """Drain every pending upcall without blocking; real IGMP/MLD packets are skipped."""
        upcalls: list[Upcall] = []
        while True:
            try:
                data = self._sock.recv(_UPCALL_BUFSIZE)
            except (BlockingIOError, InterruptedError):
                return upcalls
            upcall = self._parse_upcall(data)
            if upcall is not None:
                upcalls.append(upcall)

    def vif_exists(self, vif: int) -> bool:
        """Whether the kernel has a VIF in slot `vif` (its counters can be read)."""
        try:
            self.vif_counters(vif)
        except (NoSuchInterface, InvalidArgument):  # EADDRNOTAVAIL; EINVAL past the last
            return False
        return True

    def close(self) -> None:
        """Close the socket: the kernel flushes this table's VIFs and MFC entries."""
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> MrouteSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Provided by subclasses.
    _mfc_type: str
    _origin_slice: slice
    _group_slice: slice
    _route_slice: slice  # parent and outputs fields, with whatever the compiler put between
    _sg_request_type: str  # of SIOCGETSGCNT
    _vif_request_type: str  # of SIOCGETVIFCNT
    _vif_request_index: str  # its field naming the VIF
    _vif_word: str  # what the family calls a VIF, for messages

    def _fill_route(self, ctl, parent: int, outputs: dict[int, int] | Iterable[int]) -> None:
        raise NotImplementedError

    def _parse_upcall(self, data: bytes) -> Upcall | None:
        raise NotImplementedError

    def add_vif(self, vif: int, ifindex: int, threshold: int = 1) -> None:
        raise NotImplementedError

    def del_vif(self, vif: int) -> None:
        raise NotImplementedError

    def _fill_sg_request(self, req, source: bytes, group: bytes) -> None:
        raise NotImplementedError

    def sg_counters(self, source: bytes, group: bytes) -> SgCounters:
        raw = bytearray(ffi.sizeof(self._sg_request_type))
        req = ffi.from_buffer(self._sg_request_type + " *", raw)
        self._fill_sg_request(req, self._packed(source, "source"), self._packed(group, "group"))
        try:
            fcntl.ioctl(self._sock.fileno(), abi.SIOCGETSGCNT, raw, True)
        except OSError as exc:
            raise self._failed(
                exc, f"read counters of ({address_text(source)}, {address_text(group)})"
            ) from None
        return SgCounters(req.pktcnt, req.bytecnt, req.wrong_if)

    def sg_counters_many(self, pairs: Iterable[tuple[bytes, bytes]]) -> list[Counts | None]:
        """(packets, bytes, wrong_if) of each (source, group), None where the kernel holds
        no entry: ListRoutes' way (sgcounters.py has the figures)."""
        return read_sg_counters(self.family, self._sock.fileno(), pairs)

    def vif_counters(self, vif: int) -> VifCounters:
        check_vif(vif)
        raw = bytearray(ffi.sizeof(self._vif_request_type))
        req = ffi.from_buffer(self._vif_request_type + " *", raw)
        setattr(req, self._vif_request_index, vif)
        try:
            fcntl.ioctl(self._sock.fileno(), abi.SIOCGETVIFCNT, raw, True)
        except OSError as exc:
            raise self._failed(exc, f"read counters of {self._vif_word} {vif}") from None
        return VifCounters(req.icount, req.ocount, req.ibytes, req.obytes)


def address_text(address: object) -> str:
    """An address for a message: packed bytes of either family as text."""
    if type(address) is bytes and len(address) in (4, 16):
        return format_address(address)
    return repr(address)


def check_vif(vif: int) -> None:
    if not 0 <= vif < abi.MAXVIFS:
        raise InvalidArgument(f"VIF index {vif} is out of range; valid are 0 to {abi.MAXVIFS - 1}")
