"""Network namespaces src -> rtr -> dst joined by veth pairs, with real UDP multicast."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import select
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from .resource import Resource

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# Documentation ranges (RFC 5737, RFC 3849) and MCAST-TEST-NET (RFC 5771).
UPSTREAM_V4 = ("192.0.2.1", "192.0.2.254", 24)
UPSTREAM_V6 = ("2001:db8:1::1", "2001:db8:1::fe", 64)
DOWNSTREAM_V4 = "198.51.{n}.{host}"
DOWNSTREAM_V6 = "2001:db8:2:{n}::{host}"
GROUP_V4 = "233.252.0.1"
GROUP_V6 = "ff3e::db8:1"


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body (this thread only) inside network namespace `name`.

    Sockets created inside keep that namespace after the block ends.
    """
    with open("/proc/thread-self/ns/net", "rb") as original:
        with open(f"/run/netns/{name}", "rb") as target:
            _setns(target.fileno())
        try:
            yield
        finally:
            _setns(original.fileno())


def netns_run(
    name: str, *argv: str, check: bool = True, **kwargs
) -> subprocess.CompletedProcess[str]:
    """Run a command inside network namespace `name`; returns the completed process."""
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], check=check, text=True, capture_output=True, **kwargs
    )


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@dataclass
class Lab(Resource):
    """src -> rtr -> dst[0..n-1]: one upstream leg and `downstreams` downstream legs.

    In rtr the interfaces are `up0` (towards src) and `down0`, `down1`, ... (towards
    each dst namespace); in src and each dst the interface is `eth0`.
    """

    downstreams: int = 1
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    namespaces: list[str] = field(default_factory=list)

    @property
    def src(self) -> str:
        return f"mfc-src-{self.suffix}"

    @property
    def rtr(self) -> str:
        return f"mfc-rtr-{self.suffix}"

    def dst(self, n: int = 0) -> str:
        return f"mfc-dst{n}-{self.suffix}"

    upstream = "up0"

    @staticmethod
    def downstream(n: int = 0) -> str:
        return f"down{n}"

    # -- addresses ---------------------------------------------------------------
    @staticmethod
    def source_address(family: str = "ipv4") -> str:
        return UPSTREAM_V4[0] if family == "ipv4" else UPSTREAM_V6[0]

    @staticmethod
    def group(family: str = "ipv4") -> str:
        return GROUP_V4 if family == "ipv4" else GROUP_V6

    # -- life cycle ----------------------------------------------------------------
    def _add_netns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        netns_run(name, "ip", "link", "set", "lo", "up")

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        _run(
            "ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
            "peer", "name", name_b, "netns", ns_b,
        )  # fmt: skip
        netns_run(ns_a, "ip", "link", "set", name_a, "up")
        netns_run(ns_b, "ip", "link", "set", name_b, "up")

    def _address(self, ns: str, ifname: str, address: str, prefix: int) -> None:
        extra = ["nodad"] if ":" in address else []
        netns_run(ns, "ip", "addr", "add", f"{address}/{prefix}", "dev", ifname, *extra)

    def start(self) -> None:
        self._add_netns(self.src)
        self._add_netns(self.rtr)
        for n in range(self.downstreams):
            self._add_netns(self.dst(n))
        for key in ("all", "default"):
            netns_run(self.rtr, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
        self._veth(self.src, "eth0", self.rtr, self.upstream)
        self._address(self.src, "eth0", UPSTREAM_V4[0], UPSTREAM_V4[2])
        self._address(self.rtr, self.upstream, UPSTREAM_V4[1], UPSTREAM_V4[2])
        self._address(self.src, "eth0", UPSTREAM_V6[0], UPSTREAM_V6[2])
        self._address(self.rtr, self.upstream, UPSTREAM_V6[1], UPSTREAM_V6[2])
        for n in range(self.downstreams):
            self.add_downstream(n)

    def add_downstream(self, n: int) -> None:
        """Create (or re-create after deleting it) the leg rtr:down<n> <-> dst<n>:eth0."""
        self._veth(self.rtr, self.downstream(n), self.dst(n), "eth0")
        host_v4 = DOWNSTREAM_V4.format(n=100 + n, host=1)
        router_v4 = DOWNSTREAM_V4.format(n=100 + n, host=254)
        self._address(self.dst(n), "eth0", host_v4, 24)
        self._address(self.rtr, self.downstream(n), router_v4, 24)
        self._address(self.dst(n), "eth0", DOWNSTREAM_V6.format(n=n, host=1), 64)
        self._address(self.rtr, self.downstream(n), DOWNSTREAM_V6.format(n=n, host="fe"), 64)

    def add_upstream(self) -> None:
        """Re-create the leg src:eth0 <-> rtr:up0 after it was deleted."""
        self._veth(self.src, "eth0", self.rtr, self.upstream)
        self._address(self.src, "eth0", UPSTREAM_V4[0], UPSTREAM_V4[2])
        self._address(self.rtr, self.upstream, UPSTREAM_V4[1], UPSTREAM_V4[2])
        self._address(self.src, "eth0", UPSTREAM_V6[0], UPSTREAM_V6[2])
        self._address(self.rtr, self.upstream, UPSTREAM_V6[1], UPSTREAM_V6[2])

    def add_source(self, family: str, n: int) -> str:
        """Give src:eth0 its n-th extra sender address (a new source) and return it."""
        if family == "ipv4":
            address, prefix = f"192.0.2.{10 + n}", 24
        else:
            address, prefix = f"2001:db8:1::{0x10 + n:x}", 64
        self._address(self.src, "eth0", address, prefix)
        return address

    def delete_link(self, ns: str, ifname: str) -> None:
        netns_run(ns, "ip", "link", "del", ifname)

    def stop(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces.clear()

    # -- helpers -------------------------------------------------------------------
    def ifindex(self, ns: str, ifname: str) -> int:
        with in_netns(ns):
            return socket.if_nametoindex(ifname)

    def sender(self, family: str = "ipv4", ttl: int = 8, source: str | None = None) -> Sender:
        return Sender.open(self.src, "eth0", family, ttl, source)

    def receiver(self, n: int = 0, family: str = "ipv4", group: str | None = None) -> Receiver:
        return Receiver.open(self.dst(n), "eth0", family, group or self.group(family))

    def mroute_show(self, family: str = "ipv4", table: str | None = None) -> str:
        argv = ["ip", "-6" if family == "ipv6" else "-4", "mroute", "show"]
        if table is not None:
            argv += ["table", table]
        return netns_run(self.rtr, *argv).stdout


PORT = 5001


@dataclass
class Sender:
    """A UDP multicast sender in a namespace, with a chosen TTL/hop limit."""

    sock: socket.socket
    family: str

    @classmethod
    def open(
        cls, ns: str, ifname: str, family: str, ttl: int, source: str | None = None
    ) -> Sender:
        with in_netns(ns):
            ifindex = socket.if_nametoindex(ifname)
            if family == "ipv4":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                mreqn = struct.pack("4s4si", b"\0" * 4, b"\0" * 4, ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            if source is not None:
                # Extra sources are added as secondary addresses by the caller.
                # IP_FREEBIND (15) / IPV6_FREEBIND (78): bind before an address is ready.
                if family == "ipv4":
                    sock.setsockopt(socket.IPPROTO_IP, 15, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, 78, 1)
                sock.bind((source, 0))
        return cls(sock, family)

    def send(self, group: str, count: int = 1, payload: bytes = b"mfc-dbus", port: int = PORT):
        for _ in range(count):
            self.sock.sendto(payload, (group, port))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class Receiver:
    """A UDP socket in a namespace that joined a group; counts datagrams."""

    sock: socket.socket
    received: list[tuple[bytes, str, float]] = field(default_factory=list)

    @classmethod
    def open(cls, ns: str, ifname: str, family: str, group: str, port: int = PORT) -> Receiver:
        with in_netns(ns):
            ifindex = socket.if_nametoindex(ifname)
            if family == "ipv4":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((group, port))
                mreqn = struct.pack(
                    "4s4si", ipaddress.IPv4Address(group).packed, b"\0" * 4, ifindex
                )
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::", port))
                mreq = ipaddress.IPv6Address(group).packed + struct.pack("@I", ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setblocking(False)
        return cls(sock)

    def drain(self) -> int:
        """Read what has arrived; returns how many datagrams were read now."""
        n = 0
        while True:
            try:
                data, address = self.sock.recvfrom(65536)
            except BlockingIOError:
                return n
            self.received.append((data, address[0], time.monotonic()))
            n += 1

    def wait(self, count: int, timeout: float = 2.0) -> int:
        """Wait until `count` datagrams in total have arrived or `timeout` passes."""
        deadline = time.monotonic() + timeout
        self.drain()
        while len(self.received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([self.sock], [], [], left)
            self.drain()
        return len(self.received)

    def settle(self, quiet: float = 0.3) -> int:
        """Drain until nothing arrived for `quiet` seconds; returns the total count."""
        while True:
            ready, _, _ = select.select([self.sock], [], [], quiet)
            if not ready:
                return len(self.received)
            self.drain()

    @property
    def count(self) -> int:
        self.drain()
        return len(self.received)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
