"""The counters of many MFC entries at once (SIOCGETSGCNT on one reused request).

Measured here (tests/kernel and bench/scale.py): one ioctl on a reused request costs
1.4-2.9 us per entry whatever the table's size, against 20-35 us through
MrouteSocket.sg_counters (a fresh cffi struct per call). One rtnetlink dump
(mfcdump.py) costs 10-13 us per entry of the whole table up to 20,000 entries and
then more (35 us at 50,000, 48 us at 100,000: ipmr walks its list from the start for
every 32 KB message), so the dump would pay off only for more rows than the table
holds (5-19x its size): ListRoutes reads counters this way, one ioctl per row.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from collections.abc import Iterable

from ..errors import InvalidArgument, from_errno
from ..model import Family, format_address
from . import abi
from .abi import ffi

_COUNTS = struct.Struct("@LLL")  # pktcnt, bytecnt, wrong_if: unsigned long each


class _Layout:
    """Where the addresses and the counts sit in one family's request."""

    def __init__(self, ctype: str, source: tuple[str, ...], group: tuple[str, ...], size: int):
        self.template = bytearray(ffi.sizeof(ctype))
        if size == 16:  # struct sockaddr_in6: the family field must be set
            request = ffi.from_buffer(ctype + " *", self.template)
            request.src.sin6_family = request.grp.sin6_family = socket.AF_INET6
        start = ffi.offsetof(ctype, *source)
        self.source = slice(start, start + size)
        start = ffi.offsetof(ctype, *group)
        self.group = slice(start, start + size)
        self.counts = ffi.offsetof(ctype, "pktcnt")
        self.size = size


_LAYOUTS = {
    Family.IPV4: _Layout("struct sioc_sg_req", ("src",), ("grp",), 4),
    Family.IPV6: _Layout("struct sioc_sg_req6", ("src", "sin6_addr"), ("grp", "sin6_addr"), 16),
}


Counts = tuple[int, int, int]  # packets, bytes, wrong_if


def read_sg_counters(
    family: Family, fd: int, pairs: Iterable[tuple[bytes, bytes]]
) -> list[Counts | None]:
    """The counters of each packed (source, group) in the table of multicast-routing
    socket `fd`, in order; None for an entry the kernel does not hold. Any other
    refusal raises its typed error (mfc_dbus.errors)."""
    layout = _LAYOUTS[family]
    raw = bytearray(layout.template)
    source_at, group_at, size, counts_at = layout.source, layout.group, layout.size, layout.counts
    unpack = _COUNTS.unpack_from
    ioctl = fcntl.ioctl
    out: list[Counts | None] = []
    for source, group in pairs:
        if len(source) != size or len(group) != size:  # a slice would resize the request
            raise InvalidArgument(f"({source!r}, {group!r}) are not packed {family} addresses")
        raw[source_at] = source
        raw[group_at] = group
        try:
            ioctl(fd, abi.SIOCGETSGCNT, raw, True)
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:  # what ipmr answers for a missing entry
                what = f"read counters of ({format_address(source)}, {format_address(group)})"
                raise from_errno(exc.errno or errno.EIO, what) from None
            out.append(None)
            continue
        out.append(unpack(raw, counts_at))
    return out
