#!/usr/bin/python3
"""Steady multicast flows, and new sources on cue, run INSIDE the system-test container
(netns src; stdlib only: Debian 12's Python 3.11 and Debian 13's 3.13).

  steady.py IFNAME PORT SPEC [SPEC ...]
      SPEC is TAG,GROUP,SOURCE,RATE[,cue]: datagrams "<TAG> <seq>" (seq from 0) from
      SOURCE to GROUP, RATE per second, paced against the flow's own start (a late
      loop catches up instead of stretching the flow); TTL / hop limit 8.
      Prints "ready" once every socket is bound. Flows without ",cue" start at once;
      each line "cue" on stdin starts the next cued flow (printing "started TAG SOURCE
      <monotonic time>"). When stdin closes: stops every flow, prints
      "sent TAG SOURCE N ERRORS" per flow that started, then "done", and exits.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time


class Flow:
    def __init__(self, spec: str, ifindex: int) -> None:
        fields = spec.split(",")
        self.tag, self.group, self.source, rate = fields[:4]
        self.cued = fields[4:] == ["cue"]
        self.interval = 1.0 / float(rate)
        self.seq = self.errors = 0
        self.start: float | None = None
        family = socket.AF_INET6 if ":" in self.group else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        if family == socket.AF_INET:
            self.sock.bind((self.source, 0))
            mreqn = bytes(8) + struct.pack("i", ifindex)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            self.target: tuple = (self.group, PORT)
        else:
            self.sock.bind((self.source, 0, 0, 0))
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 8)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            self.target = (self.group, PORT, 0, ifindex)

    def due(self) -> float:
        assert self.start is not None
        return self.start + self.seq * self.interval

    def send_due(self, now: float) -> None:
        while self.due() <= now:
            try:
                self.sock.sendto(f"{self.tag} {self.seq}".encode(), self.target)
            except OSError:
                self.errors += 1  # counted as sent: the receiver's count shows the loss
            self.seq += 1


PORT = 0


def main() -> int:
    global PORT
    ifname, PORT, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    ifindex = socket.if_nametoindex(ifname)
    flows = [Flow(spec, ifindex) for spec in specs]
    cued = [flow for flow in flows if flow.cued]
    print("ready", flush=True)
    now = time.monotonic()
    for flow in flows:
        if not flow.cued:
            flow.start = now
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        running = [flow for flow in flows if flow.start is not None]
        now = time.monotonic()
        for flow in running:
            flow.send_due(now)
        wait = min((flow.due() for flow in running), default=now + 1.0) - time.monotonic()
        readable, _, _ = select.select([stdin], [], [], max(wait, 0.0))
        if not readable:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b"cue" and cued:
                flow = cued.pop(0)
                flow.start = time.monotonic()
                print("started", flow.tag, flow.source, f"{flow.start:.6f}", flush=True)
    for flow in flows:
        if flow.start is not None:
            print("sent", flow.tag, flow.source, flow.seq, flow.errors, flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
