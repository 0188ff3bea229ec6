"""The IPv4 (ipmr) and IPv6 (ip6mr) multicast-routing sockets: each family's structs
packed and parsed through cffi (mfcctl / mf6cctl, vifctl / mif6ctl, the counter
requests, igmpmsg / mrt6msg), and the functions that open or adopt one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from ..errors import InvalidArgument
from ..model import Family
from . import abi
from .abi import ffi
from .mroute import (
    MrouteSocket,
    Upcall,
    UpcallKind,
    check_vif,
)


def _check_threshold(threshold: int) -> None:
    if not 1 <= threshold <= 255:
        raise InvalidArgument(f"TTL threshold {threshold} is out of range; valid are 1 to 255")


def _field_slice(ctype: str, fields: str, size: int) -> slice:
    start = ffi.offsetof(ctype, *fields.split("."))
    return slice(start, start + size)


_IM_SRC = _field_slice("struct igmpmsg", "im_src", 4)  # upcall addresses
_IM_DST = _field_slice("struct igmpmsg", "im_dst", 4)
_IM6_SRC = _field_slice("struct mrt6msg", "im6_src", 16)
_IM6_DST = _field_slice("struct mrt6msg", "im6_dst", 16)


def _span(ctype: str, first: str, last: str) -> slice:
    """From the start of field `first` to the end of field `last`."""
    last_type = dict(ffi.typeof(ctype).fields)[last].type
    return slice(ffi.offsetof(ctype, first), ffi.offsetof(ctype, last) + ffi.sizeof(last_type))


class Ipv4MrouteSocket(MrouteSocket):
    family = Family.IPV4
    _socket_family = socket.AF_INET
    _protocol = socket.IPPROTO_IGMP
    _level = socket.IPPROTO_IP
    _address_size = 4
    _mfc_type = "struct mfcctl"
    _origin_slice = _field_slice("struct mfcctl", "mfcc_origin", 4)
    _group_slice = _field_slice("struct mfcctl", "mfcc_mcastgrp", 4)
    _route_slice = _span("struct mfcctl", "mfcc_parent", "mfcc_ttls")
    _sg_request_type = "struct sioc_sg_req"
    _vif_request_type = "struct sioc_vif_req"
    _vif_request_index = "vifi"
    _vif_word = "VIF"

    def _fill_route(self, ctl, parent: int, outputs: dict[int, int] | Iterable[int]) -> None:
        ctl.mfcc_parent = parent
        items = outputs.items() if isinstance(outputs, dict) else ((v, 1) for v in outputs)
        for vif, ttl in items:
            check_vif(vif)
            _check_threshold(ttl)
            ctl.mfcc_ttls[vif] = ttl

    def add_vif(self, vif: int, ifindex: int, threshold: int = 1) -> None:
        _check_threshold(threshold)  # the VIF index is the kernel's to judge (ENFILE)
        ctl = ffi.new("struct vifctl *")
        ctl.vifc_vifi = vif
        ctl.vifc_flags = abi.VIFF_USE_IFINDEX
        ctl.vifc_threshold = threshold
        ctl.vifc_lcl_ifindex = ifindex
        self._setsockopt(
            abi.MRT_ADD_VIF, ffi.buffer(ctl), f"add VIF {vif} on interface index {ifindex}"
        )

    def del_vif(self, vif: int) -> None:
        check_vif(vif)
        ctl = ffi.new("struct vifctl *")
        ctl.vifc_vifi = vif
        self._setsockopt(abi.MRT_DEL_VIF, ffi.buffer(ctl), f"delete VIF {vif}")

    def _fill_sg_request(self, req, source: bytes, group: bytes) -> None:
        ffi.memmove(ffi.addressof(req, "src"), source, 4)
        ffi.memmove(ffi.addressof(req, "grp"), group, 4)

    def _parse_upcall(self, data: bytes) -> Upcall | None:
        if len(data) < ffi.sizeof("struct igmpmsg"):
            return None
        msg = ffi.from_buffer("struct igmpmsg *", data)
        if msg.im_mbz != 0:  # a real IGMP packet: byte 9 is the IP protocol (2)
            return None
        try:
            kind = UpcallKind(msg.im_msgtype)
        except ValueError:
            return None
        source, group = data[_IM_SRC], data[_IM_DST]
        vif = msg.im_vif | (msg.im_vif_hi << 8)
        return Upcall(kind, self.family, self.table, source, group, vif)


class Ipv6MrouteSocket(MrouteSocket):
    family = Family.IPV6
    _socket_family = socket.AF_INET6
    _protocol = socket.IPPROTO_ICMPV6
    _level = socket.IPPROTO_IPV6
    _address_size = 16
    _mfc_type = "struct mf6cctl"
    _origin_slice = _field_slice("struct mf6cctl", "mf6cc_origin.sin6_addr", 16)
    _group_slice = _field_slice("struct mf6cctl", "mf6cc_mcastgrp.sin6_addr", 16)
    _route_slice = _span("struct mf6cctl", "mf6cc_parent", "mf6cc_ifset")
    _sg_request_type = "struct sioc_sg_req6"
    _vif_request_type = "struct sioc_mif_req6"
    _vif_request_index = "mifi"
    _vif_word = "MIF"

    def _prepare_mfc(self, ctl) -> None:
        ctl.mf6cc_origin.sin6_family = socket.AF_INET6
        ctl.mf6cc_mcastgrp.sin6_family = socket.AF_INET6

    def _configure_socket(self) -> None:
        # Upcalls are queued to this socket directly; block every real ICMPv6 message.
        blocked = ffi.new("struct icmp6_filter *")
        for i in range(8):
            blocked.icmp6_filt[i] = 0xFFFFFFFF
        self._sock.setsockopt(socket.IPPROTO_ICMPV6, abi.ICMP6_FILTER, ffi.buffer(blocked))

    def _fill_route(self, ctl, parent: int, outputs: dict[int, int] | Iterable[int]) -> None:
        ctl.mf6cc_parent = parent
        for vif in outputs.keys() if isinstance(outputs, dict) else outputs:
            check_vif(vif)
            ctl.mf6cc_ifset.ifs_bits[vif // 32] |= 1 << (vif % 32)

    def add_vif(self, vif: int, ifindex: int, threshold: int = 1) -> None:
        _check_threshold(threshold)  # the VIF index is the kernel's to judge (ENFILE)
        ctl = ffi.new("struct mif6ctl *")
        ctl.mif6c_mifi = vif
        ctl.mif6c_pifi = ifindex
        ctl.vifc_threshold = threshold
        self._setsockopt(
            abi.MRT_ADD_VIF, ffi.buffer(ctl), f"add MIF {vif} on interface index {ifindex}"
        )

    def del_vif(self, vif: int) -> None:
        check_vif(vif)
        ctl = ffi.new("struct mif6ctl *")
        ctl.mif6c_mifi = vif
        self._setsockopt(abi.MRT_DEL_VIF, ffi.buffer(ctl), f"delete MIF {vif}")

    def _fill_sg_request(self, req, source: bytes, group: bytes) -> None:
        req.src.sin6_family = socket.AF_INET6
        req.grp.sin6_family = socket.AF_INET6
        ffi.memmove(ffi.addressof(req.src, "sin6_addr"), source, 16)
        ffi.memmove(ffi.addressof(req.grp, "sin6_addr"), group, 16)

    def _parse_upcall(self, data: bytes) -> Upcall | None:
        if len(data) < ffi.sizeof("struct mrt6msg"):
            return None
        msg = ffi.from_buffer("struct mrt6msg *", data)
        if msg.im6_mbz != 0:  # a real ICMPv6 message: byte 0 is its (non-zero) type
            return None
        try:
            kind = UpcallKind(msg.im6_msgtype)
        except ValueError:
            return None
        source, group = data[_IM6_SRC], data[_IM6_DST]
        return Upcall(kind, self.family, self.table, source, group, msg.im6_mif)


_SOCKET_CLASSES: dict[Family, type[MrouteSocket]] = {
    Family.IPV4: Ipv4MrouteSocket,
    Family.IPV6: Ipv6MrouteSocket,
}


def open_mroute_socket(family: Family, table: int = 0) -> MrouteSocket:
    """Open and initialise the multicast-routing socket of `family` and `table`.

    Raises KernelBusy if another process owns that table, FamilyUnavailable if the
    kernel has no multicast routing for the family.
    """
    return _SOCKET_CLASSES[family](table)


def adopt_mroute_socket(family: Family, table: int, fd: int) -> MrouteSocket:
    """The multicast-routing socket of `family` and `table` already initialised on
    `fd` (MfcError if `fd` is not such a socket)."""
    return _SOCKET_CLASSES[family](table, adopt_fd=fd)
