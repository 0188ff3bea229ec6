"""Restarts keep the kernel's table: mfc-dbusd stores its multicast-routing sockets
(FDSTORE=1) with a stand-in for systemd, is SIGKILLed under steady flows, and the next
process adopts the sockets passed back (LISTEN_FDS). No packet of a running flow is
lost; the first packets of a source that starts while no process runs arrive; the
kernel's entries are adopted, not written again; non-persistent, learned and lease
routes survive. Closing the store (what `systemctl stop` does) flushes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from mfc_lab import Lab
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess
from mfc_lab.fdstore import NotifyStore
from mfc_lab.flow import Draining, SteadyFlow, longest_gap, lost, numbers
from tests.kernel.test_membership import _kernel_groups
from tests.reliability.helpers import add_veth_pairs

from .daemon_proc import busctl_call
from .igmp_wire import TO_EXCLUDE, TO_INCLUDE, IgmpCapture

SOURCE = Lab.source_address()
GROUP = Lab.group()
ANY_GROUP = "233.252.0.99"  # a (*,G) route, not persistent
LEASE_GROUP = "233.252.0.98"  # a lease route of a client that stays on the bus
RATE = 400  # packets per second, each flow
ADOPTED = re.compile(r"ipv4 table 0: adopted (\d+) MFC entries from the kernel "
                     r"\(\d+ written again, 0 removed\)")  # fmt: skip
LEASE_CLIENT = Path(__file__).with_name("lease_client.py")


def _routes(bus: PrivateBus) -> list:
    listing = busctl_call(bus, "ListRoutes", "a{sv}", "0", "--json=short").stdout
    rows = json.loads(listing)["data"][0]
    return sorted(
        (row[0], row[1], row[2], row[3], row[4]["state"]["data"],
         row[4]["persistent"]["data"], bool(row[4]["owner"]["data"]))
        for row in rows
    )  # fmt: skip


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sigkill_and_adoption_lose_no_packet(lab: Lab, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime.json"
    with PrivateBus() as bus, NotifyStore() as store:
        service = ServiceProcess(bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
                                 extra=["--runtime-file", str(runtime)],
                                 notify_socket=store.path)  # fmt: skip
        holder = None
        try:
            with service:
                store.wait_for("READY", "1")
                holder = subprocess.Popen(
                    [sys.executable, str(LEASE_CLIENT), bus.address, "", LEASE_GROUP, "up0",
                     "down0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                busctl_call(bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "1", "down0",
                            "0")  # fmt: skip
                busctl_call(bus, "AddRoute", "sssasa{sv}", "*", ANY_GROUP, "up0", "1", "down0",
                            "1", "persistent", "b", "false")  # fmt: skip
                assert holder.stdout is not None
                assert holder.stdout.readline().startswith("ready"), "lease client failed"
                newcomer = lab.add_source("ipv4", 1)  # starts sending while nothing runs
                _restart_under_traffic(lab, bus, service, store, newcomer)
                log = service.log_text()
                assert "ipv4 table 0: adopted 2 VIFs from the kernel (0 removed)" in log
                adopted = ADOPTED.search(log)
                assert adopted is not None and int(adopted[1]) >= 2, log[-2000:]

                assert holder.stdin is not None
                holder.stdin.close()  # the lease holder leaves: its route ends
                holder.wait(5)
                _wait_until(lambda: not any(r[1] == LEASE_GROUP for r in _routes(bus)))
                assert service.stop() == 0  # SIGTERM with the sockets stored: no flush
                assert GROUP in lab.mroute_show()
        finally:
            if holder is not None and holder.poll() is None:
                holder.kill()
                holder.wait()
        store.close()  # as `systemctl stop` empties the store: the kernel flushes
        assert GROUP not in lab.mroute_show()


def _restart_under_traffic(lab, bus, service, store, newcomer: str) -> None:
    with lab.receiver(0) as receiver, lab.receiver(0, group=ANY_GROUP) as any_rx:
        with Draining(receiver, any_rx), SteadyFlow(lab, GROUP, RATE) as flow, \
                SteadyFlow(lab, ANY_GROUP, RATE) as learned:  # fmt: skip
            _wait_until(lambda: len(receiver.received) > RATE // 4)
            _wait_until(lambda: len(any_rx.received) > RATE // 4)
            before = _routes(bus)
            store.drain()
            assert set(store.fds) == {"mroute-ipv4-0", "mroute-ipv6-0"}, store.fds
            table = lab.mroute_show()

            service.kill()  # SIGKILL: only the stored sockets hold the kernel's table
            assert lab.mroute_show() == table
            with lab.sender(source=newcomer) as first:  # a new source, nobody to learn it
                first.send(ANY_GROUP, 3, payload=b"\xff\xff\xff\x00first")
            arrived = len(receiver.received)
            _wait_until(lambda: len(receiver.received) > arrived + RATE // 4)  # forwarding

            service.passed_fds = dict(store.fds)
            service.start()
            store.wait_for("READY", "1")
            # The entries are verified after READY; the flows they carry are learned then.
            _wait_until(lambda: ADOPTED.search(service.log_text()) is not None)
            after = _routes(bus)
            arrived = len(receiver.received)
            _wait_until(lambda: len(receiver.received) > arrived + RATE // 4)
    assert lost(receiver, flow.sent) == []
    assert lost(any_rx, learned.sent, source=SOURCE) == []
    newcomer_packets = [n for n, _ in numbers(any_rx, source=newcomer)]
    assert len(newcomer_packets) == 3, "the first packets of a new source were lost"
    print(f"longest gap: {longest_gap(receiver) * 1000:.1f} ms (S,G), "
          f"{longest_gap(any_rx, SOURCE) * 1000:.1f} ms (*,G)")  # fmt: skip
    assert [r for r in after if r[4] != "learned"] == [r for r in before if r[4] != "learned"]
    assert ("*", ANY_GROUP, "up0", ["down0"], "installed", False, False) in after
    assert ("*", LEASE_GROUP, "up0", ["down0"], "installed", False, True) in after
    learned_after = {(r[0], r[1]) for r in after if r[4] == "learned"}
    assert (SOURCE, ANY_GROUP) in learned_after and (newcomer, ANY_GROUP) in learned_after


def test_an_interface_deleted_while_no_process_runs(lab: Lab, tmp_path: Path) -> None:
    """The kernel's table changed behind the service's back: an output interface was
    deleted between the crash and the restart. The adopted route is pending (logged),
    the other output never stops, and the interface's return completes the route."""
    with PrivateBus() as bus, NotifyStore() as store:
        add_veth_pairs(lab, 1)  # xv0, xv1 in the router
        service = ServiceProcess(bus, lab, tmp_path / "state.json", tmp_path / "mfc-dbusd.log",
                                 extra=["--runtime-file", str(tmp_path / "runtime.json")],
                                 notify_socket=store.path)  # fmt: skip
        with service:
            store.wait_for("READY", "1")
            busctl_call(bus, "AddRoute", "sssasa{sv}", SOURCE, GROUP, "up0", "2", "down0",
                        "xv0", "0")  # fmt: skip
            with lab.receiver(0) as receiver, Draining(receiver):
                with SteadyFlow(lab, GROUP, RATE) as flow:
                    _wait_until(lambda: len(receiver.received) > RATE // 4)
                    store.drain()
                    service.kill()
                    lab.delete_link(lab.rtr, "xv0")  # takes its peer xv1 along
                    service.passed_fds = dict(store.fds)
                    service.start()
                    store.wait_for("READY", "1")
                    [row] = [r for r in _routes(bus) if r[1] == GROUP]
                    assert row[4] == "pending", row
                    add_veth_pairs(lab, 1)  # xv0 is back (a new ifindex)
                    _wait_until(lambda: "xv0" in lab.mroute_show())
                    [row] = [r for r in _routes(bus) if r[1] == GROUP]
                    assert row[4] == "installed", row
                    arrived = len(receiver.received)
                    _wait_until(lambda: len(receiver.received) > arrived + RATE // 4)
            assert lost(receiver, flow.sent) == []
            assert "the VIF of xv0 (slot 2) is gone" in service.log_text()


JOINED = "233.252.0.50"  # an any-source join
SSM_SOURCE, SSM_GROUP = "192.0.2.1", "232.1.1.1"  # a source-specific join
JOINED_V6 = "ff3e::50"
TRANSIENT = "233.252.0.51"  # persistent=false: the runtime record keeps it


def _join(bus: PrivateBus, source: str, group: str, *options: str) -> None:
    busctl_call(bus, "JoinGroup", "sssa{sv}", "up0", source, group,
                str(len(options) // 2), *options)  # fmt: skip


def _held(lab: Lab) -> set[str]:
    return _kernel_groups(lab.rtr, "ipv4", "up0") | _kernel_groups(lab.rtr, "ipv6", "up0")


def _restart(service: ServiceProcess, store: NotifyStore, end) -> None:
    """End the process (kill or stop), start the next with the stored sockets."""
    store.drain()
    assert {"join-ipv4-0", "join-ipv6-0"} <= set(store.fds), store.fds
    end()
    service.passed_fds = dict(store.fds)
    service.start()
    store.wait_for("READY", "1")


def test_group_joins_survive_restarts_without_a_leave(lab: Lab, tmp_path: Path) -> None:
    """The join sockets go to the fd store too: after SIGKILL and after SIGTERM the next
    process adopts them, so the router never leaves the groups (no IGMP leave on the
    wire, the memberships never absent). A join removed from the state file while no
    process ran is left at the next start."""
    state = tmp_path / "state.json"
    with PrivateBus() as bus, NotifyStore() as store:
        service = ServiceProcess(bus, lab, state, tmp_path / "mfc-dbusd.log",
                                 extra=["--runtime-file", str(tmp_path / "runtime.json")],
                                 notify_socket=store.path)  # fmt: skip
        with service, IgmpCapture(lab.src, "eth0") as wire:
            store.wait_for("READY", "1")
            _join(bus, "", JOINED)
            _join(bus, SSM_SOURCE, SSM_GROUP)
            _join(bus, "", JOINED_V6)
            _join(bus, "", TRANSIENT, "persistent", "b", "false")
            kept = {JOINED, SSM_GROUP, JOINED_V6, TRANSIENT}
            assert kept <= _held(lab)

            def ended_holding_all(end):
                def run() -> None:
                    end()
                    assert kept <= _held(lab), "the groups were left when the process ended"

                return run

            for n, end in enumerate((service.kill, service.stop)):
                _restart(service, store, ended_holding_all(end))
                marker = f"233.252.0.{60 + n}"  # joined after the restart: seen on the wire
                _join(bus, "", marker)
                wire.wait_for(marker, TO_EXCLUDE)
                assert kept | {marker} <= _held(lab)
            leaves = [r for r in wire.records if r.leaves and r.group in kept]
            assert leaves == [], leaves

            def stopped_and_edited() -> None:  # the administrator drops a join meanwhile
                service.stop()
                saved = json.loads(state.read_text())
                saved["joins"] = [j for j in saved["joins"] if j["group"] != JOINED]
                state.write_text(json.dumps(saved))

            _restart(service, store, stopped_and_edited)
            wire.wait_for(JOINED, TO_INCLUDE)  # left at start: no join wants it now
            assert JOINED not in _held(lab) and kept - {JOINED} <= _held(lab)
            assert "left 1 group memberships the previous process held" in service.log_text()
        store.close()  # `systemctl stop`: the stored sockets close, the groups are left
        assert not (kept & _held(lab))
