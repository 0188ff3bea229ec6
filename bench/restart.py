"""Restart: packets lost and the longest gap when the bus or mfc-dbusd restarts, time to
READY=1 with 10,000 and 100,000 routes, beside smcroute restarted the same way.

One lab, one run. Two steady numbered flows (--rate datagrams/s each, from src) run from
start to end: one through an (S,G) route, one through a (*,G) route (a learned flow);
receivers in dst count them by sequence number. Each event gets a window: from --before
seconds of steady delivery, through the event, until delivery has resumed and --after
seconds more; "lost" is the numbers sent in the window that never arrived, "gap" the
longest time between two arrivals in it, "send gap" the same at the sender (the floor:
a sender thread delayed by the loaded machine shows there, not in the router).

mfc-dbusd runs in the router namespace on a private system bus with a stand-in for
systemd's notify socket and fd store (mfc_lab.fdstore): it stores its multicast
routing sockets there, and a restart gets them back (LISTEN_FDS), as under systemd.
Events: dbus-daemon stopped --bus-down s and started again; SIGKILL and restart adopting
the stored sockets (a crash under Restart=); SIGTERM and restart adopting (what
`systemctl restart` does); SIGHUP (reload); and, as the baseline without the fd store,
SIGTERM and restart of a process run by hand (no notify socket: the stop flushes, the
start restores the state file). During each restart a new source starts sending to the
(*,G) group: "new src" counts its first datagrams delivered. Then the table is filled
(AddRoutes batches of 10,000 through dbus-fast) to each of --routes persistent routes:
SIGKILL and restart adopting (the state file's journal is replayed: the fill was never
compacted), SIGTERM and restart adopting (a compacted state file), and SIGKILL from a
cold kernel (the store emptied, as `systemctl stop` + start: the start restores the
state file). "routes" is the service's RouteCount before the event (learned flows
included).

"ready" is from starting the process (or signalling it) to READY=1 on the notify
socket; "name" from starting it (for the bus, from dbus-daemon's return) to the bus
name being owned again; "floor" is `mfc-dbusd --version` in the namespace (the
interpreter and imports, which no restart avoids). Then smcrouted (Debian's smcroute)
takes the same namespace (one multicast router per table, so only after mfc-dbusd's
sockets are closed) with the same two routes in its smcroute.conf, and is restarted the
same ways: its losses are the peer's figures. Every process is ended by PID; the lab,
the bus, and the files are removed, even on failure.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import parse_args, report
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_lab import Lab, Receiver
from mfc_lab.bus import PrivateBus, terminate_pid
from mfc_lab.daemon import MFC_DBUSD, ServiceProcess
from mfc_lab.fdstore import NotifyStore
from mfc_lab.flow import Draining, numbers

SOURCE = Lab.source_address()
GROUP = Lab.group()  # the (S,G) route's group
ANY_GROUP = "233.252.0.99"  # the (*,G) route's group: a learned flow
BULK_GROUP = "233.252.1.1"  # the routes that fill the table (no traffic)
NEWCOMER_PACKETS = 3
READY_TARGET = 1.0  # s, with 100,000 routes held (issue 13)
RESUME_TIMEOUT = 30.0  # s to wait for delivery to resume after an event


class NumberedFlow:
    """`rate` datagrams/s to `group` from src, numbered 0, 1, ...; the send time of each
    is kept, so a stall of this (Python) sender is told apart from one of the router."""

    def __init__(self, lab: Lab, group: str, rate: int) -> None:
        self.lab, self.group, self.rate = lab, group, rate
        self.sent_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.lab.sender() as sender:
            started = time.monotonic()
            while not self._stop.is_set():
                number = len(self.sent_at)
                self.sent_at.append(time.monotonic())
                sender.send(self.group, 1, payload=struct.pack("!I", number))
                delay = started + (number + 1) / self.rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def __enter__(self) -> NumberedFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class ReadyWatch:
    """Waits in a thread for the next READY=1 on `store`; started before the event."""

    def __init__(self, store: NotifyStore, timeout: float) -> None:
        store.drain()
        self.at: float | None = None
        self._store, self._timeout = store, timeout
        self._waiting = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._waiting.wait()

    def _run(self) -> None:
        self._waiting.set()
        try:
            self._store.wait_for("READY", "1", timeout=self._timeout)
        except TimeoutError:
            return
        self.at = time.monotonic()

    def since(self, start: float) -> float | None:
        self._thread.join()
        return None if self.at is None else self.at - start


@dataclass
class Window:
    what: str
    daemon: str
    start: float
    end: float = 0.0
    figures: dict = field(default_factory=dict)
    newcomer: str | None = None
    target: str = ""
    ready_target: float | None = None


class Run:
    """The lab, the continuous flows and the event windows of one run."""

    def __init__(self, lab: Lab, args, rx: Receiver, any_rx: Receiver) -> None:
        self.lab, self.args = lab, args
        self.rx, self.any_rx = rx, any_rx
        self.windows: list[Window] = []
        self._sources = 0

    def new_source(self) -> str:
        """A new sender address in src (added now, used during the next event)."""
        self._sources += 1
        return self.lab.add_source("ipv4", self._sources)

    def send_first(self, source: str) -> None:
        with self.lab.sender(source=source) as sender:
            sender.send(ANY_GROUP, NEWCOMER_PACKETS, payload=b"\xff\xff\xff\x00first")

    def wait_flowing(self, since: float | None = None) -> bool:
        """Until both receivers got an eighth of a second of datagrams after `since`."""
        want = max(1, self.args.rate // 8)
        counts = [len(self.rx.received), len(self.any_rx.received)]
        if since is None:
            since = time.monotonic()
        deadline = since + RESUME_TIMEOUT
        while time.monotonic() < deadline:
            got = [len(self.rx.received) - counts[0], len(self.any_rx.received) - counts[1]]
            if min(got) >= want:
                return True
            time.sleep(0.01)
        return False

    def event(self, what: str, daemon: str, action: Callable[[str], dict], **extra) -> None:
        """Measure `action(new_source)` (which returns its figures) in a window."""
        newcomer = self.new_source()
        if not self.wait_flowing():
            print(f"  ({what}: the flows were not running before the event)")
        time.sleep(self.args.before)
        window = Window(what, daemon, time.monotonic(), newcomer=newcomer, **extra)
        window.figures = action(newcomer)
        resumed = self.wait_flowing()
        time.sleep(self.args.after)
        window.end = time.monotonic()
        window.figures["resumed"] = resumed
        self.windows.append(window)
        print(f"  {what}: measured", flush=True)


# -- figures -----------------------------------------------------------------------------


def flow_figures(rx: Receiver, flow: NumberedFlow, start: float, end: float) -> tuple:
    """(lost, longest gap in s, longest send gap in s) of `flow` in [start, end]."""
    first = bisect.bisect_left(flow.sent_at, start)
    last = bisect.bisect_right(flow.sent_at, end)
    arrived = numbers(rx, SOURCE)
    seen = {n for n, _ in arrived if first <= n < last}
    lost = (last - first) - len(seen)
    times = sorted(at for _, at in arrived)
    return lost, _longest(times, start, end), _longest(flow.sent_at, start, end)


def _longest(times: list[float], start: float, end: float) -> float:
    """The longest interval between consecutive times in [start, end], counting the one
    that straddles `start` (the last time before it) and the one that reaches `end`."""
    low = max(0, bisect.bisect_left(times, start) - 1)
    high = bisect.bisect_right(times, end)
    inside = times[low:high]
    if not inside:
        return end - start
    edges = [*inside, end] if inside[-1] < end else inside
    return max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=0.0)


def rows_of(run: Run, flow: NumberedFlow, learned: NumberedFlow) -> list[dict]:
    rows = []
    for w in run.windows:
        sg_lost, sg_gap, sg_send = flow_figures(run.rx, flow, w.start, w.end)
        any_lost, any_gap, any_send = flow_figures(run.any_rx, learned, w.start, w.end)
        firsts = sum(1 for _, source, _ in run.any_rx.received if source == w.newcomer)
        ready = w.figures.get("ready_s")
        row = {
            "event": w.what,
            "daemon": w.daemon,
            "routes": w.figures.get("routes"),
            "sg_lost": sg_lost,
            "sg_gap_ms": sg_gap * 1000,
            "star_lost": any_lost,
            "star_gap_ms": any_gap * 1000,
            "send_gap_ms": max(sg_send, any_send) * 1000,
            "new_src": f"{firsts}/{NEWCOMER_PACKETS}",
            "ready_s": ready,
            "name_s": w.figures.get("name_s"),
            "floor_s": w.figures.get("floor_s"),
            "resumed": w.figures.get("resumed"),
            "window_s": w.end - w.start,
            "target": w.target,
            "meets_target": None,
        }
        if w.target:
            meets = sg_lost == 0 and any_lost == 0
            if w.ready_target is not None:
                meets = meets and ready is not None and ready <= w.ready_target
            row["meets_target"] = meets
        rows.append(row)
    return rows


# -- mfc-dbusd ---------------------------------------------------------------------------


def route(source: str, group: str) -> list:
    return [source, group, "up0", ["down0"], {}]


async def _add_routes(address: str, routes: list[list], batch: int) -> int:
    """AddRoutes in batches of `batch`; returns the service's RouteCount."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        for at in range(0, len(routes), batch):
            reply = await bus.call(
                Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE,
                        member="AddRoutes", signature="a(sssasa{sv})a{sv}",
                        body=[routes[at : at + batch], {}])
            )  # fmt: skip
            if reply.message_type is not MessageType.METHOD_RETURN:
                raise RuntimeError(f"AddRoutes: {reply.error_name} {reply.body}")
        reply = await bus.call(
            Message(destination=BUS_NAME, path=OBJECT_PATH,
                    interface="org.freedesktop.DBus.Properties", member="Get",
                    signature="ss", body=[INTERFACE, "RouteCount"])
        )  # fmt: skip
        if reply.message_type is not MessageType.METHOD_RETURN:
            raise RuntimeError(f"RouteCount: {reply.error_name} {reply.body}")
        return int(reply.body[0].value)
    finally:
        bus.disconnect()


def add_routes(bus: PrivateBus, routes: list[list], batch: int) -> int:
    return asyncio.run(_add_routes(bus.address, routes, batch))


def bulk_routes(start: int, stop: int) -> list[list]:
    base = ipaddress.IPv4Address("10.0.0.0")
    return [route(str(base + 1 + n), BULK_GROUP) for n in range(start, stop)]


def start_floor(lab: Lab) -> float:
    """Best of three `mfc-dbusd --version` in the router namespace: process and imports."""
    best = float("inf")
    for _ in range(3):
        start = time.monotonic()
        subprocess.run(["ip", "netns", "exec", lab.rtr, MFC_DBUSD, "--version"], check=True,
                       capture_output=True)  # fmt: skip
        best = min(best, time.monotonic() - start)
    return best


class Mfc:
    """mfc-dbusd with the notify socket and fd store stand-in, and its restarts."""

    def __init__(self, run: Run, bus: PrivateBus, store: NotifyStore, tmp: Path) -> None:
        self.run, self.bus, self.store = run, bus, store
        self.by_systemd = ["--runtime-file", str(tmp / "runtime.json")]
        self.service = ServiceProcess(
            bus, run.lab, tmp / "state.json", tmp / "mfc-dbusd.log", extra=self.by_systemd,
            notify_socket=store.path,
        )  # fmt: skip
        self.floor = start_floor(run.lab)
        self.timeout = run.args.start_timeout

    def start(self, adopt: bool) -> dict:
        """Start (passing the stored sockets back if `adopt`); time to READY and name."""
        self.store.drain()
        self.service.passed_fds = dict(self.store.fds) if adopt else {}
        watch = None
        if self.service.notify_socket is not None:
            watch = ReadyWatch(self.store, self.timeout)
        start = time.monotonic()
        self.service.start(timeout=self.timeout)
        name = time.monotonic() - start
        ready = None if watch is None else watch.since(start)
        return {"ready_s": ready, "name_s": name, "floor_s": self.floor}

    def empty_store(self) -> None:
        """Close the stored sockets, as `systemctl stop` does: the kernel flushes."""
        self.store.drain()
        for fd in self.store.fds.values():
            os.close(fd)
        self.store.fds.clear()

    def by_hand(self, on: bool) -> None:
        """Switch between a process run by hand (no notify socket, no fd store, no
        runtime file) and one run by systemd; the table is restored from the state file."""
        self.stop()
        self.empty_store()
        self.service.notify_socket = None if on else self.store.path
        self.service.extra = [] if on else self.by_systemd
        self.start(adopt=False)

    def stop(self) -> None:
        self.store.drain()
        status = self.service.stop(timeout=self.timeout)
        if status not in (0, None):
            raise RuntimeError(f"mfc-dbusd exited {status}: {self.service.log_tail()}")

    def routes(self, batch: int, extra: list[list] | None = None) -> int:
        return add_routes(self.bus, extra or [], batch)

    # The events: each takes the new source that starts sending meanwhile.
    def bus_restart(self, newcomer: str) -> dict:
        self.bus.stop_daemon()
        self.run.send_first(newcomer)
        time.sleep(self.run.args.bus_down)
        self.bus.restart_daemon()
        back = time.monotonic()
        owner = self.bus.wait_for_name(BUS_NAME, timeout=self.timeout)
        if owner != self.service.pid:
            raise RuntimeError(f"{BUS_NAME} owned by {owner}, not mfc-dbusd {self.service.pid}")
        return {"name_s": time.monotonic() - back}

    def sigkill(self, newcomer: str, adopt: bool = True) -> dict:
        self.store.drain()
        self.service.kill()
        if not adopt:
            self.empty_store()
        self.run.send_first(newcomer)
        return self.start(adopt=adopt)

    def sigterm(self, newcomer: str) -> dict:
        self.stop()
        self.run.send_first(newcomer)
        return self.start(adopt=self.service.notify_socket is not None)

    def sighup(self, newcomer: str) -> dict:
        watch = ReadyWatch(self.store, self.timeout)
        start = time.monotonic()
        os.kill(self.service.pid, signal.SIGHUP)
        self.run.send_first(newcomer)
        return {"ready_s": watch.since(start)}


def measure_mfc(run: Run, bus: PrivateBus, tmp: Path) -> None:
    args = run.args
    zero = "0 lost"
    with NotifyStore() as store:
        mfc = Mfc(run, bus, store, tmp)
        try:
            mfc.start(adopt=False)
            held = mfc.routes(args.batch, [route(SOURCE, GROUP), route("*", ANY_GROUP)])
            figures = {"routes": held}
            run.event(f"dbus-daemon stopped {args.bus_down:g} s, started again", "mfc-dbusd",
                      lambda n: figures | mfc.bus_restart(n), target=zero)  # fmt: skip
            run.event("SIGKILL, restart adopting the fd store", "mfc-dbusd",
                      lambda n: figures | mfc.sigkill(n), target=zero)  # fmt: skip
            run.event("SIGTERM, restart adopting (systemctl restart)", "mfc-dbusd",
                      lambda n: figures | mfc.sigterm(n), target=zero)  # fmt: skip
            run.event("SIGHUP (reload)", "mfc-dbusd", lambda n: figures | mfc.sighup(n),
                      target=zero)  # fmt: skip
            mfc.by_hand(True)
            run.event("SIGTERM, restart by hand (no fd store)", "mfc-dbusd",
                      lambda n: figures | mfc.sigterm(n))  # fmt: skip
            mfc.by_hand(False)
            filled = 0
            for count in args.routes:
                held = mfc.routes(args.batch, bulk_routes(filled, count))
                filled = count
                print(f"  {held:,} routes held", flush=True)
                run.event(f"SIGKILL, restart adopting, {count:,} routes", "mfc-dbusd",
                          lambda n, held=held: {"routes": held} | mfc.sigkill(n),
                          target=f"0 lost, ready <= {READY_TARGET:g} s",
                          ready_target=READY_TARGET)  # fmt: skip
                run.event(f"SIGTERM, restart adopting, {count:,} routes", "mfc-dbusd",
                          lambda n, held=held: {"routes": held} | mfc.sigterm(n),
                          target=f"0 lost, ready <= {READY_TARGET:g} s",
                          ready_target=READY_TARGET)  # fmt: skip
                run.event(
                    f"SIGKILL, store emptied, cold start, {count:,} routes",
                    "mfc-dbusd",
                    lambda n, held=held: {"routes": held} | mfc.sigkill(n, adopt=False),
                )
            mfc.stop()
        except BaseException:
            print(mfc.service.log_tail())
            raise
        finally:
            mfc.service.kill()
            mfc.empty_store()  # the sockets close: the kernel's table is free for smcrouted
        unhandled = mfc.service.unhandled()
        if unhandled:
            print("mfc-dbusd logged unhandled errors:", *unhandled, sep="\n  ")


# -- smcroute ----------------------------------------------------------------------------

SMCROUTE_CONF = f"""\
phyint up0 enable
phyint down0 enable
mroute from up0 source {SOURCE} group {GROUP} to down0
mroute from up0 group {ANY_GROUP} to down0
"""


class Smcroute:
    """smcrouted in the router namespace with unique config, PID file and IPC socket;
    READY=1 comes over a notify socket (it speaks sd_notify)."""

    def __init__(self, run: Run, tmp: Path, notes: NotifyStore) -> None:
        self.run, self.notes = run, notes
        self.conf, self.log = tmp / "smcroute.conf", tmp / "smcrouted.log"
        self.conf.write_text(SMCROUTE_CONF)
        self.argv = [
            "ip", "netns", "exec", run.lab.rtr, "smcrouted", "-n", "-N", "-l", "notice",
            "-f", str(self.conf), "-u", str(tmp / "smcroute.sock"), "-P", str(tmp / "pid"),
            "-i", f"mfcbench-{run.lab.suffix}",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.timeout = run.args.start_timeout

    def start(self) -> dict:
        watch = ReadyWatch(self.notes, self.timeout)
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notes.path))
        start = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)  # fmt: skip
        ready = watch.since(start)
        if self.process.poll() is not None:
            raise RuntimeError(f"smcrouted exited {self.process.returncode}: {self.tail()}")
        return {"ready_s": ready}

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def restart(self, newcomer: str, sig: int) -> dict:
        self.stop(sig)
        self.run.send_first(newcomer)
        return self.start()

    def sighup(self, newcomer: str) -> dict:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGHUP)
        self.run.send_first(newcomer)
        return {}


def measure_smcroute(run: Run, tmp: Path) -> None:
    with NotifyStore() as notes:
        smc = Smcroute(run, tmp, notes)
        try:
            smc.start()
            figures = {"routes": 2}
            run.event("SIGKILL, started again", "smcrouted",
                      lambda n: figures | smc.restart(n, signal.SIGKILL))  # fmt: skip
            run.event("SIGTERM, started again (systemctl restart)", "smcrouted",
                      lambda n: figures | smc.restart(n, signal.SIGTERM))  # fmt: skip
            run.event("SIGHUP (reload)", "smcrouted", lambda n: figures | smc.sighup(n))
        except BaseException:
            if smc.log.exists():
                print(smc.tail())
            raise
        finally:
            if smc.process is not None:
                terminate_pid(smc.process.pid)
                smc.process.wait()


# -- main --------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        quick={"action": "store_true", "help": "fewer routes, shorter windows (for tests)"},
        rate={"type": int, "default": 400, "help": "datagrams/s of each flow (default 400)"},
        routes={"type": lambda text: [int(n) for n in text.split(",")],
                "help": "routes held for the time to ready (default 10000,100000)"},
        batch={"type": int, "default": 10_000, "help": "routes per AddRoutes (10000)"},
        before={"type": float, "help": "s of steady flow in a window before the event (1)"},
        after={"type": float, "help": "s in a window after delivery resumed (1)"},
        bus_down={"type": float, "help": "s without dbus-daemon (default 2)"},
        start_timeout={"type": float, "default": 120.0, "help": "s for a start (120)"},
        skip_smcroute={"action": "store_true", "help": "measure mfc-dbusd only"},
        logs={"type": Path, "help": "keep the daemons' logs in this directory"},
    )  # fmt: skip
    quick = args.quick
    args.routes = args.routes or ([1_000, 3_000] if quick else [10_000, 100_000])
    args.before = args.before if args.before is not None else (0.3 if quick else 1.0)
    args.after = args.after if args.after is not None else (0.3 if quick else 1.0)
    args.bus_down = args.bus_down if args.bus_down is not None else (0.5 if quick else 2.0)
    for name in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        os.environ.pop(name, None)  # the services started here get only what we give them
    started = time.monotonic()
    with Lab(downstreams=1) as lab, tempfile.TemporaryDirectory(prefix="mfc-restart-") as d:
        tmp = Path(d)
        with lab.receiver(0) as rx, lab.receiver(0, group=ANY_GROUP) as any_rx:
            run = Run(lab, args, rx, any_rx)
            with Draining(rx, any_rx):
                with NumberedFlow(lab, GROUP, args.rate) as flow, \
                        NumberedFlow(lab, ANY_GROUP, args.rate) as learned:  # fmt: skip
                    with PrivateBus() as bus:
                        measure_mfc(run, bus, tmp)
                    if args.skip_smcroute:
                        pass
                    elif shutil.which("smcrouted") is None:
                        print("smcrouted is not installed: no peer figures (apt install smcroute)")
                    else:
                        measure_smcroute(run, tmp)
            rx.settle(0.2)
            any_rx.settle(0.2)
            rows = rows_of(run, flow, learned)
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    shutil.copy(log, args.logs / log.name)
    print(f"({time.monotonic() - started:.0f} s, {args.rate} datagrams/s per flow)")
    report(
        "restart: packets lost, longest gap and time to ready per event",
        rows,
        ["event", "daemon", "routes", "sg_lost", "sg_gap_ms", "star_lost", "star_gap_ms",
         "send_gap_ms", "new_src", "ready_s", "name_s", "floor_s", "target", "meets_target"],
        args.json,
    )  # fmt: skip


if __name__ == "__main__":
    main()
