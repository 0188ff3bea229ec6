"""Another multicast router owns the kernel's table. The service still starts, answers
reads, refuses writes to the owned table with KernelBusy and a message that says who
and what to do, keeps the other family (and other tables) working, and takes the
table over once the other router is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, Variant

from mfc_dbus.model import Family
from mfc_lab import Lab
from mfc_lab.daemon import kernel_entries

from .helpers import Caller, require_root, served

BUSY = "org.mfc.Forwarding1.Error.KernelBusy"
S4, G4 = Lab.source_address("ipv4"), Lab.group("ipv4")
S6, G6 = Lab.source_address("ipv6"), Lab.group("ipv6")
ROUTE = "sssasa{sv}"
HOLD_IPV4 = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
s.setsockopt(socket.IPPROTO_IP, 200, struct.pack("i", 1))  # MRT_INIT
print("ready", flush=True)
sys.stdin.read()
"""


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def smcrouted(lab: Lab, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Debian's smcrouted in the router namespace (it takes MRT_INIT and MRT6_INIT),
    with its config, PID file and control socket in `tmp_path`; ended by PID."""
    conf = tmp_path / "smcroute.conf"
    conf.write_text("")
    log = open(tmp_path / "smcrouted.log", "wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.rtr, "smcrouted", "-n", "-N", "-l", "info",
         "-f", str(conf), "-P", str(tmp_path / "smcroute.pid"),
         "-u", str(tmp_path / "smcroute.sock")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while b"Ready" not in (tmp_path / "smcrouted.log").read_bytes():
            assert process.poll() is None, (tmp_path / "smcrouted.log").read_text()
            assert time.monotonic() < deadline, "smcrouted did not become ready"
            time.sleep(0.05)
        yield process
    finally:
        _end(process)
        log.close()


@contextmanager
def ipv4_holder(lab: Lab) -> Iterator[subprocess.Popen]:
    """A second process holding only IPv4's MRT_INIT in the router namespace."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.rtr, sys.executable, "-c", HOLD_IPV4],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().startswith("ready")
        yield process
    finally:
        _end(process)


async def _families(caller: Caller) -> list[str]:
    reply = await caller.bus.call(
        Message(
            destination="org.mfc.Forwarding1", path="/org/mfc/Forwarding1",
            interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
            body=["org.mfc.Forwarding1", "Families"],
        )
    )  # fmt: skip
    return reply.body[0].value


def _wait_for_traffic(lab: Lab, family: str) -> int:
    with lab.receiver(0, family) as receiver, lab.sender(family) as sender:
        deadline = time.monotonic() + 3
        while receiver.count == 0 and time.monotonic() < deadline:
            sender.send(Lab.group(family), 1)
            time.sleep(0.1)
        return receiver.count


@pytest.mark.root
def test_smcrouted_owns_the_tables(tmp_path: Path) -> None:
    require_root()
    with Lab(downstreams=1) as lab, smcrouted(lab, tmp_path) as other:
        with served(tmp_path, lab) as (bus, service):

            async def while_busy() -> None:
                caller = await Caller.connect(bus.address)
                try:
                    assert await caller.list_routes() == []  # reads work
                    assert await _families(caller) == []
                    for source, group in ((S4, G4), (S6, G6)):
                        reply = await caller.call(
                            "AddRoute", ROUTE, [source, group, "up0", ["down0"], {}]
                        )
                        assert reply.message_type is MessageType.ERROR
                        assert reply.error_name == BUSY, reply.body
                        assert "smcrouted" in reply.body[0] and "another table" in reply.body[0]
                    reply = await caller.call("AddVif", "sa{sv}", ["down0", {}])
                    assert reply.error_name == BUSY, reply.body
                    # "use another table": table 10 is not smcrouted's.
                    table10 = {"table": Variant("u", 10)}
                    await caller.ok("AddRoute", ROUTE, [S4, G4, "up0", ["down0"], table10])
                    assert [(r[0], r[4]["state"].value) for r in await caller.list_routes()] == [
                        (S4, "installed")
                    ]
                finally:
                    caller.close()

            asyncio.run(while_busy())
            assert {e[2] for e in kernel_entries(lab)} == {10}  # nothing in smcrouted's table
            assert service.alive()
            _end(other)  # smcrouted leaves: the tables are free

            async def after() -> None:
                caller = await Caller.connect(bus.address)
                try:
                    await caller.ok("AddRoute", ROUTE, [S4, G4, "up0", ["down0"], {}])
                    await caller.ok("AddRoute", ROUTE, [S6, G6, "up0", ["down0"], {}])
                    assert sorted(await _families(caller)) == ["ipv4", "ipv6"]
                finally:
                    caller.close()

            asyncio.run(after())
            assert {(e[0], e[2]) for e in kernel_entries(lab)} == {(S4, 0), (S6, 0), (S4, 10)}
            assert _wait_for_traffic(lab, "ipv4") > 0
            assert service.unhandled() == [], service.log_tail()


@pytest.mark.root
def test_ipv4_owned_by_another_process_ipv6_keeps_working(tmp_path: Path) -> None:
    require_root()
    with Lab(downstreams=1) as lab, ipv4_holder(lab):
        with served(tmp_path, lab) as (bus, service):

            async def scenario() -> None:
                caller = await Caller.connect(bus.address)
                try:
                    assert await _families(caller) == ["ipv6"]
                    reply = await caller.call("AddRoute", ROUTE, [S4, G4, "up0", ["down0"], {}])
                    assert reply.error_name == BUSY, reply.body
                    assert "owned by another process" in reply.body[0], reply.body
                    batch = [[(S6, G6, "up0", ["down0"], {}), (S4, G4, "up0", ["down0"], {})], {}]
                    reply = await caller.call("AddRoutes", "a(sssasa{sv})a{sv}", batch)
                    assert reply.error_name == BUSY, reply.body  # all or nothing
                    assert await caller.list_routes() == []
                    await caller.ok("AddRoute", ROUTE, [S6, G6, "up0", ["down0"], {}])
                finally:
                    caller.close()

            asyncio.run(scenario())
            assert kernel_entries(lab, Family.IPV6) == {(S6, G6, 0, "up0", frozenset({"down0"}))}
            assert kernel_entries(lab, Family.IPV4) == set()
            assert _wait_for_traffic(lab, "ipv6") > 0
            assert service.unhandled() == [], service.log_tail()
