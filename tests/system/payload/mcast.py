#!/usr/bin/python3
"""Multicast sender and receiver run INSIDE the system-test container (stdlib only:
Debian 12's Python 3.11 and Debian 13's 3.13).

  mcast.py recv GROUP PORT IFNAME
      join GROUP on IFNAME; print "ready", then "<source> <tag> <seq>" per datagram
      (with --stamp a fourth field: the arrival's CLOCK_MONOTONIC time, which the host
      shares: no time namespace); exit when stdin closes (the harness closes it) or
      after --max-seconds.
  mcast.py send GROUP PORT IFNAME --tag T --count N [--interval S] [--source ADDR]
      send N datagrams "<tag> <seq>" (seq 0..N-1) with TTL / hop limit --ttl (8):
      IP_MULTICAST_TTL for IPv4, IPV6_MULTICAST_HOPS for IPv6 (the TTL option does
      nothing to IPv6 packets).
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
import time


def family_of(group: str) -> int:
    return socket.AF_INET6 if ":" in group else socket.AF_INET


def recv(args: argparse.Namespace) -> int:
    family = family_of(args.group)
    ifindex = socket.if_nametoindex(args.ifname)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET:
        sock.bind((args.group, args.port))
        mreqn = socket.inet_pton(family, args.group) + bytes(4) + struct.pack("i", ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
    else:
        sock.bind((args.group, args.port, 0, ifindex))
        mreq = socket.inet_pton(family, args.group) + struct.pack("I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    stdin = sys.stdin.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return 0
        readable, _, _ = select.select([sock, stdin], [], [], left)
        if stdin in readable and not sys.stdin.buffer.read1(4096):
            return 0  # the harness closed our stdin
        if sock in readable:
            data, peer = sock.recvfrom(2048)
            if args.stamp:
                print(peer[0], data.decode(errors="replace"), f"{time.monotonic():.6f}",
                      flush=True)  # fmt: skip
            else:
                print(peer[0], data.decode(errors="replace"), flush=True)


def send(args: argparse.Namespace) -> int:
    family = family_of(args.group)
    ifindex = socket.if_nametoindex(args.ifname)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET:
        if args.source:
            sock.bind((args.source, 0))
        mreqn = bytes(8) + struct.pack("i", ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, args.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        target = (args.group, args.port)
    else:
        if args.source:
            sock.bind((args.source, 0, 0, 0))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, args.ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        target = (args.group, args.port, 0, ifindex)
    start = time.monotonic()
    for seq in range(args.count):
        if args.interval:
            # Paced against the start, so a slow iteration does not stretch the flow.
            delay = start + seq * args.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sock.sendto(f"{args.tag} {seq}".encode(), target)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("recv", "send"):
        p = sub.add_parser(mode)
        p.add_argument("group")
        p.add_argument("port", type=int)
        p.add_argument("ifname")
    r = sub.choices["recv"]
    r.add_argument("--max-seconds", type=float, default=300.0)
    r.add_argument("--stamp", action="store_true")
    s = sub.choices["send"]
    s.add_argument("--tag", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--source", default="")
    s.add_argument("--ttl", type=int, default=8)
    args = parser.parse_args()
    return recv(args) if args.mode == "recv" else send(args)


if __name__ == "__main__":
    sys.exit(main())
