#!/usr/bin/python3
"""The kernel's IPv4 multicast table from outside the service, run INSIDE the system-test
container (stdlib only).

  mrtool.py add-mfc SOURCE GROUP IIF OIF [OIF ...]
      add an (S,G) entry "with another tool": MRT_ADD_MFC on a raw IGMP socket of our
      own. The kernel takes it from any CAP_NET_ADMIN socket while another socket (the
      service's, or the one systemd's fd store holds) owns the table. Interfaces are
      mapped to VIF indexes through /proc/net/ip_mr_vif (they must be VIFs already).
  mrtool.py sample
      print "<CLOCK_MONOTONIC> <entries in /proc/net/ip_mr_cache>" as fast as it can
      read the table; exit when stdin closes.
  mrtool.py sample-igmp IFNAME GROUP
      print "<CLOCK_MONOTONIC> <1 if IFNAME holds GROUP in /proc/net/igmp, else 0>" as
      fast as it can; exit when stdin closes.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

MRT_ADD_MFC = 204  # MRT_BASE (200) + 4, <linux/mroute.h>
MAXVIFS = 32


def vifs() -> dict[str, int]:
    with open("/proc/net/ip_mr_vif") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {row[1]: int(row[0]) for row in rows}


def add_mfc(source: str, group: str, iif: str, oifs: list[str]) -> int:
    table = vifs()
    ttls = bytearray(MAXVIFS)
    for oif in oifs:
        ttls[table[oif]] = 1
    # struct mfcctl: origin, mcastgrp, vifi_t parent (u16), ttls[32], then (after 2
    # bytes of padding) pkt_cnt, byte_cnt, wrong_if (u32) and expire (int).
    mfcctl = struct.pack(
        "=4s4sH32s2xIIIi",
        socket.inet_pton(socket.AF_INET, source),
        socket.inet_pton(socket.AF_INET, group),
        table[iif],
        bytes(ttls),
        0, 0, 0, 0,
    )  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_MFC, mfcctl)
    sock.close()
    return 0


def sample() -> int:
    stdin = sys.stdin.fileno()
    while True:
        with open("/proc/net/ip_mr_cache", "rb") as f:
            count = f.read().count(b"\n") - 1
        print(f"{time.monotonic():.6f} {count}", flush=True)
        readable, _, _ = select.select([stdin], [], [], 0)
        if readable and not os.read(stdin, 4096):
            return 0


def joined(ifname: str, group_hex: str) -> bool:
    """Whether /proc/net/igmp lists the group (hex as the kernel prints it) on ifname."""
    device = None
    with open("/proc/net/igmp") as f:
        for line in f.readlines()[1:]:
            if not line.startswith("\t"):
                device = line.split()[1]
            elif device == ifname and line.split()[0] == group_hex:
                return True
    return False


def sample_igmp(ifname: str, group: str) -> int:
    group_hex = f'{struct.unpack("=I", socket.inet_aton(group))[0]:08X}'
    stdin = sys.stdin.fileno()
    while True:
        print(f"{time.monotonic():.6f} {int(joined(ifname, group_hex))}", flush=True)
        readable, _, _ = select.select([stdin], [], [], 0)
        if readable and not os.read(stdin, 4096):
            return 0


def main() -> int:
    if sys.argv[1:2] == ["add-mfc"] and len(sys.argv) >= 6:
        return add_mfc(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    if sys.argv[1:] == ["sample"]:
        return sample()
    if sys.argv[1:2] == ["sample-igmp"] and len(sys.argv) == 4:
        return sample_igmp(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
