"""The dbus-fast bug that service/upstream.py works around, shown on a real bus.

dbus-daemon is paused (SIGSTOP, our own private one) so the connection's socket
fills: a large message is left half written, and the next send finds the socket full.
Plain dbus-fast then drops the connection (python-dbus-next issue #153). When a
dbus-fast release stops doing that, the first test fails: remove the workaround.
With the workaround both messages are written once the daemon reads again.

Each scenario runs in a process of its own: dbus-fast 5.x's compiled code, unwinding
the dropped connection, leaves CPython 3.11's recursion bookkeeping off, and the next
`ast.parse` in that process (pytest's assertion rewriting) fails with SystemError.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.service.upstream import tolerate_full_socket
from mfc_lab.bus import PrivateBus

BIG = "x" * (4 << 20)  # far more than a unix socket's send buffer


def _signal(body: str) -> Message:
    return Message(message_type=MessageType.SIGNAL, path="/x", interface="x.y", member="Z",
                   signature="s", body=[body])  # fmt: skip


@contextmanager
def paused(daemon: int) -> Iterator[None]:
    os.kill(daemon, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(daemon, signal.SIGCONT)


async def _half_written_then_one_more(address: str, daemon: int, workaround: bool) -> bool:
    conn = await MessageBus(bus_address=address).connect()
    if workaround:
        assert tolerate_full_socket(conn)
    with paused(daemon):
        big = conn.send(_signal(BIG))
        await asyncio.sleep(0)  # nothing to wait for: the loop runs the writer once
        assert not big.done()  # the socket is full; the rest waits
        small = None
        try:
            small = conn.send(_signal("after"))
        except OSError:  # 5.x: the socket was closed under the send that found it full
            dropped = True
        else:
            await asyncio.sleep(0)
            dropped = not conn.connected
    if dropped:
        sent = {big} if small is None else {big, small}
        await asyncio.wait(sent, timeout=5)
        errors = [f.exception() for f in sent if f.done() and not f.cancelled()]
        assert any(isinstance(error, BlockingIOError) for error in errors), errors
    else:
        await asyncio.wait_for(asyncio.gather(big, small), 10)
        reply = await conn.call(
            Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus", member="GetId")
        )  # fmt: skip
        assert reply.message_type is MessageType.METHOD_RETURN
        conn.disconnect()
    return dropped


def _scenario(workaround: bool) -> str:
    with PrivateBus() as bus:
        assert bus.process is not None
        done = subprocess.run(
            [sys.executable, __file__, bus.address, str(bus.process.pid), str(workaround)],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_dbus_fast_still_drops_the_connection_on_a_full_socket() -> None:
    assert _scenario(workaround=False) == "dropped"


def test_the_workaround_waits_for_the_socket_instead() -> None:
    assert _scenario(workaround=True) == "kept"


if __name__ == "__main__":
    address, daemon, applied = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "True"
    lost = asyncio.run(_half_written_then_one_more(address, daemon, applied))
    print("dropped" if lost else "kept")
