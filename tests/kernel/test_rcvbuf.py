"""Upcalls of a burst of new sources all fit in the multicast-routing socket's receive
buffer: 10,000 first packets of distinct (S,G), queued while nobody reads the socket,
are all read afterwards (IPv4 and IPv6). A control run on the same socket with the
buffer lowered to the kernel's default shows the burst would overflow it."""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

from mfc_dbus.kernel import Ipv4MrouteSocket, UpcallKind, mroute, open_mroute_socket
from mfc_dbus.model import Family, format_address
from mfc_lab import in_netns

SOURCES, GROUPS = 40, 250  # 10,000 distinct (S,G), all in the documentation ranges
BURST = SOURCES * GROUPS
SO_MEMINFO = 55  # <linux/sock_diag.h> SK_MEMINFO_*: [0] rmem_alloc, [1] rcvbuf, [8] drops
SO_RCVBUFFORCE = 33


def meminfo(sock) -> dict[str, int]:
    with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_RAW) as dup:
        values = struct.unpack("9I", dup.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))
    return {"queued": values[0], "rcvbuf": values[1], "drops": values[8]}


def set_rcvbuf(sock, size: int) -> None:
    with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_RAW) as dup:
        dup.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size // 2)  # the kernel doubles


def groups(family: Family) -> list[str]:
    if family is Family.IPV4:
        return [f"233.252.0.{n}" for n in range(1, GROUPS + 1)]
    return [f"ff3e::db8:{n:x}" for n in range(1, GROUPS + 1)]


def burst(senders, family: Family, sock) -> set[tuple[str, str]]:
    """Send one first packet to every (S,G) without reading `sock`, wait until the
    kernel has queued all it will, then read: the (S,G) of the NOCACHE upcalls read."""
    for sender in senders:
        for group in groups(family):
            sender.sock.sendto(b"first", (group, 5001))
    queued, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:  # settled: nothing queued for 0.2 s
        time.sleep(0.2)
        now = meminfo(sock)["queued"]
        if now == queued:
            break
        queued = now
    return {
        (format_address(u.source), format_address(u.group))
        for u in sock.read_upcalls()
        if u.kind is UpcallKind.NOCACHE
    }


@pytest.mark.root
@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=str)
def test_burst_of_10000_new_sources_queues_every_upcall(lab, family):
    with in_netns(lab.rtr):
        sock = open_mroute_socket(family)
        up0 = socket.if_nametoindex("up0")
    senders = []
    try:
        sock.add_vif(0, up0)
        sources = [lab.add_source(family, n) for n in range(SOURCES)]
        senders = [lab.sender(family, source=source) for source in sources]
        time.sleep(0.2)  # addresses settle
        sock.read_upcalls()
        expected = {(str(s), g) for s in sources for g in groups(family)}
        assert len(expected) == BURST

        before = meminfo(sock)
        read = burst(senders, family, sock)
        after = meminfo(sock)
        assert after["drops"] == before["drops"], f"upcalls dropped: {before} -> {after}"
        assert read == expected, f"{len(read)} of {BURST} upcalls read"

        # Control: the same burst against the kernel's default buffer loses upcalls. A
        # fresh socket starts an empty table (closing one drops its unresolved entries
        # too), so each (S,G) is new again and sends a fresh NOCACHE.
        sock.close()
        with in_netns(lab.rtr):
            sock = open_mroute_socket(family)
        sock.add_vif(0, up0)
        with open("/proc/sys/net/core/rmem_default") as f:
            default = int(f.read())
        set_rcvbuf(sock, default)
        assert meminfo(sock)["rcvbuf"] == default
        before = meminfo(sock)
        read = burst(senders, family, sock)
        after = meminfo(sock)
        assert len(read) < BURST // 2, f"the default buffer ({default} bytes) held {len(read)}"
        # (>=: real IGMP/MLD packets meeting the full buffer are dropped and counted too)
        assert after["drops"] - before["drops"] >= BURST - len(read)
    finally:
        for sender in senders:
            sender.close()
        sock.close()


class _RefusingSocket:
    """Stands in for the raw socket of an unprivileged process: SO_RCVBUFFORCE is EPERM."""

    def __init__(self) -> None:
        self.rcvbuf = 212_992

    def setsockopt(self, level, option, value) -> None:
        if option == SO_RCVBUFFORCE:
            raise PermissionError(1, "Operation not permitted")
        assert option == socket.SO_RCVBUF
        self.rcvbuf = min(value, 4_194_304) * 2  # rmem_max, doubled

    def getsockopt(self, level, option) -> int:
        return self.rcvbuf


def test_without_cap_net_admin_falls_back_to_so_rcvbuf_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(mroute, "_rcvbuf_fallback_logged", False)
    caplog.set_level(logging.DEBUG, logger=mroute.__name__)
    stubs = [_RefusingSocket(), _RefusingSocket()]
    for stub in stubs:
        sock = object.__new__(Ipv4MrouteSocket)  # no kernel socket: no root needed
        sock._sock = stub
        sock._raise_receive_buffer()
    assert [stub.rcvbuf for stub in stubs] == [8_388_608, 8_388_608]
    [record] = [r for r in caplog.records if "SO_RCVBUFFORCE" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "Operation not permitted" in record.getMessage()
