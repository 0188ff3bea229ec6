"""Restarts keep the kernel's table: mfc-dbusd stores its multicast-routing sockets
(FDSTORE=1) with a stand-in for systemd, is SIGKILLed under a steady flow, and the
next process adopts the sockets passed back (LISTEN_FDS): no packet is lost, the
kernel's entries are adopted rather than written again, and the non-persistent and
learned routes are still there. A plain stop without the store flushes as before."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from pathlib import Path

from mfc_dbus.lab import Lab
from mfc_dbus.lab.bus import PrivateBus
from mfc_dbus.lab.daemon import ServiceProcess
from mfc_dbus.lab.fdstore import NotifyStore

from .daemon_proc import busctl_call

SOURCE = Lab.source_address()
GROUP = Lab.group()
ANY_GROUP = "233.252.0.99"  # a (*,G) route, not persistent
RATE = 400  # packets per second, each flow
SO_RCVBUFFORCE = 33  # not in Python's socket module


class SteadyFlow:
    """Datagrams numbered 0, 1, 2, ... at RATE per second to `group`, in a thread."""

    def __init__(self, lab: Lab, group: str) -> None:
        self.lab, self.group = lab, group
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.lab.sender() as sender:
            started = time.monotonic()
            while not self._stop.is_set():
                sender.send(self.group, 1, payload=struct.pack("!I", self.sent))
                self.sent += 1
                delay = started + self.sent / RATE - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self) -> SteadyFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _lost(received: list, sent: int) -> list[int]:
    numbers = {struct.unpack("!I", payload[:4])[0] for payload, *_ in received}
    return sorted(set(range(sent)) - numbers)


def _routes(bus: PrivateBus) -> list:
    listing = busctl_call(bus, "ListRoutes", "a{sv}", "0", "--json=short").stdout
    rows = json.loads(listing)["data"][0]
    return sorted(
        (row[0], row[1], row[2], row[3], row[4]["state"]["data"], row[4]["persistent"]["data"])
        for row in rows
    )


def test_sigkill_and_adoption_lose_no_packet(lab: Lab, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime.json"
    with PrivateBus() as bus, NotifyStore() as store:
        service = ServiceProcess(bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
                                 extra=["--runtime-file", str(runtime)],
                                 notify_socket=store.path)  # fmt: skip
        with service:
            store.wait_for("READY", "1")
            busctl_call(bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "1", "down0", "0")
            busctl_call(bus, "AddRoute", "sssasa{sv}", "*", ANY_GROUP, "up0", "1", "down0",
                        "1", "persistent", "b", "false")  # fmt: skip
            with lab.receiver(0) as receiver, lab.receiver(0, group=ANY_GROUP) as learned_rx:
                for rx in (receiver, learned_rx):  # room for the whole restart, undrained
                    rx.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
                with SteadyFlow(lab, GROUP) as flow, SteadyFlow(lab, ANY_GROUP) as learned:
                    receiver.wait(RATE // 4, timeout=5)
                    learned_rx.wait(RATE // 4, timeout=5)
                    before = _routes(bus)
                    store.drain()
                    assert set(store.fds) == {"mroute-ipv4-0", "mroute-ipv6-0"}, store.fds
                    table = lab.mroute_show()

                    service.kill()  # SIGKILL: only the stored sockets hold the table
                    assert lab.mroute_show() == table
                    gap_start = receiver.count
                    receiver.wait(gap_start + RATE // 4, timeout=5)  # forwarding goes on
                    assert receiver.count >= gap_start + RATE // 4

                    service.passed_fds = dict(store.fds)
                    service.start()
                    store.wait_for("READY", "1")
                    after = _routes(bus)
                    receiver.wait(receiver.count + RATE // 4, timeout=5)
                receiver.settle()
                learned_rx.settle()
                assert _lost(receiver.received, flow.sent) == []
                assert _lost(learned_rx.received, learned.sent) == []
            assert after == before
            assert ("*", ANY_GROUP, "up0", ["down0"], "installed", False) in after
            assert any(row[1] == ANY_GROUP and row[4] == "learned" for row in after), after
            log = service.log_text()
            assert (
                "ipv4 table 0: adopted 2 VIFs and 2 MFC entries from the kernel (0 removed)" in log
            )
            assert service.stop() == 0  # SIGTERM with the sockets stored: no flush
            assert GROUP in lab.mroute_show()
        store.close()  # as `systemctl stop` empties the store: the kernel flushes
        assert GROUP not in lab.mroute_show()
