"""Kernel layer: add then delete 10,000 (S,G) entries per family, against the raw floor.

Each figure is the best of --repeats rounds (the machine is shared; noise only slows).

The floor is the bare setsockopt loop from Python with one reused cffi struct and the
addresses already packed: what no layer above can beat.
"""

from __future__ import annotations

import ipaddress
import socket

from common import parse_args, rate, report, timed

from mfc_dbus.kernel import abi, open_mroute_socket
from mfc_dbus.kernel.abi import ffi
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns

TARGET = 250_000


def flows(family: Family, count: int) -> list[tuple[bytes, bytes]]:
    """(source, group) pairs, packed as the kernel layer takes them."""
    group = ipaddress.ip_address("233.252.0.1" if family is Family.IPV4 else "ff3e::db8:1")
    base = ipaddress.ip_address("10.0.0.0" if family is Family.IPV4 else "2001:db8:9::")
    return [((base + 1 + n).packed, group.packed) for n in range(count)]


def best_of(repeats: int, run, *args) -> tuple[float, float]:
    """Best (add, delete) times over `repeats` rounds: the machine is shared, noise only adds."""
    results = [run(*args) for _ in range(repeats)]
    return min(add for add, _ in results), min(delete for _, delete in results)


def layer_run(sock, pairs) -> tuple[float, float]:
    outputs = [1, 2]
    add = timed(lambda: [sock.add_mfc(s, g, 0, outputs) for s, g in pairs])
    delete = timed(lambda: [sock.del_mfc(s, g) for s, g in pairs])
    return add, delete


def floor_run(sock, family: Family, pairs) -> tuple[float, float]:
    """The same work as bare setsockopt calls on the layer's own socket."""
    ctype = "struct mfcctl" if family is Family.IPV4 else "struct mf6cctl"
    level = socket.IPPROTO_IP if family is Family.IPV4 else socket.IPPROTO_IPV6
    fields = ("mfcc_origin",) if family is Family.IPV4 else ("mf6cc_origin", "sin6_addr")
    size = 4 if family is Family.IPV4 else 16
    ctl = ffi.new(ctype + " *")
    buf = ffi.buffer(ctl)
    start = ffi.offsetof(ctype, *fields)
    if family is Family.IPV4:
        ctl.mfcc_mcastgrp.s_addr = 0  # set below as bytes
        group_at = ffi.offsetof(ctype, "mfcc_mcastgrp")
        ctl.mfcc_ttls[1] = ctl.mfcc_ttls[2] = 1
    else:
        ctl.mf6cc_origin.sin6_family = ctl.mf6cc_mcastgrp.sin6_family = socket.AF_INET6
        group_at = ffi.offsetof(ctype, "mf6cc_mcastgrp", "sin6_addr")
        ctl.mf6cc_ifset.ifs_bits[0] = 0b110
    buf[group_at : group_at + size] = pairs[0][1]
    packed = [s for s, _ in pairs]
    raw = sock._sock  # the floor: no layer in between

    def run(option: int) -> None:
        for address in packed:
            buf[start : start + size] = address
            raw.setsockopt(level, option, buf)

    return timed(run, abi.MRT_ADD_MFC), timed(run, abi.MRT_DEL_MFC)


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        count={"type": int, "default": 10_000, "help": "entries per family (default 10000)"},
        repeats={"type": int, "default": 5, "help": "rounds; the best is reported (default 5)"},
    )
    rows = []
    with Lab(downstreams=2) as lab:
        for family in (Family.IPV4, Family.IPV6):
            with in_netns(lab.rtr):
                sock = open_mroute_socket(family)
                for vif, name in enumerate(("up0", "down0", "down1")):
                    sock.add_vif(vif, socket.if_nametoindex(name))
            pairs = flows(family, args.count)
            floor_add, floor_del = best_of(args.repeats, floor_run, sock, family, pairs)
            layer_add, layer_del = best_of(args.repeats, layer_run, sock, pairs)
            sock.close()
            for operation, layer, floor in (
                ("add", layer_add, floor_add),
                ("delete", layer_del, floor_del),
            ):
                layer_rate = rate(args.count, layer)
                rows.append(
                    {
                        "family": str(family),
                        "operation": operation,
                        "entries": args.count,
                        "layer_per_s": layer_rate,
                        "floor_per_s": rate(args.count, floor),
                        "layer_vs_floor": layer_rate / rate(args.count, floor),
                        "target_per_s": TARGET,
                        "meets_target": layer_rate >= TARGET,
                    }
                )
    report(
        "kernel layer: MFC entries per second",
        rows,
        ["family", "operation", "entries", "layer_per_s", "floor_per_s", "layer_vs_floor",
         "target_per_s", "meets_target"],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
