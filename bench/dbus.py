"""D-Bus service: AddRoute throughput through mfc-dbusd with the real polkitd, beside
the D-Bus ping floor and smcroute's smcroutectl, measured in the same run.

mfc-dbusd runs in the lab's router namespace on a private system bus built from the
project's policy, logging at its default level (an audit line per change, to a file);
the real polkitd has the project's actions and the example rule for a throwaway
user's group. Its routes are not persistent (no state file), like smcroutectl's.
Each figure is the best of --repeats rounds, each round started on a quiet service.
smcrouted then runs in the same namespace (after mfc-dbusd has stopped: one multicast
router per table) and is stopped by PID.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import parse_args, rate, report
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.auth import AuthExternal

from mfc_dbus.names import (
    ACTION_MANAGE_ROUTES,
    BUS_NAME,
    INTERFACE,
    OBJECT_PATH,
    POLKIT_BUS_NAME,
    POLKIT_INTERFACE,
    POLKIT_OBJECT_PATH,
    POLKIT_SUBJECT_BUS_NAME,
)
from mfc_lab import Lab
from mfc_lab.bus import PrivateBus, terminate_pid
from mfc_lab.polkit import RealPolkit, ThrowawayUser, wait_until

GROUP = Lab.group()
TARGETS = {
    "root sequential AddRoute": 3_000,
    "authorized user sequential AddRoute": 600,
    "root AddRoute, 100 in flight": 10_000,
    "root AddRoutes batch": 50_000,
}


def sources(count: int, offset: int = 0) -> list[str]:
    base = ipaddress.ip_address("10.0.0.0")
    return [str(base + offset + n + 1) for n in range(count)]


def add_route(source: str) -> Message:
    return Message(
        destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member="AddRoute",
        signature="sssasa{sv}", body=[source, GROUP, "up0", ["down0", "down1"], {}],
    )  # fmt: skip


def call(member: str, signature: str = "", body: list | None = None, **kw) -> Message:
    return Message(destination=BUS_NAME, path=OBJECT_PATH, member=member, signature=signature,
                   body=body or [], **kw)  # fmt: skip


async def checked(bus: MessageBus, message: Message) -> Message:
    reply = await bus.call(message)
    if reply.message_type is not MessageType.METHOD_RETURN:
        raise RuntimeError(f"{message.member}: {reply.error_name} {reply.body}")
    return reply


async def flush(bus: MessageBus) -> None:
    """Remove every route, then wait until the service has sent the RouteRemoved signals
    (it answers the Ping after them), so the next phase starts on a quiet service."""
    await checked(bus, call("Flush", "a{sv}", [{}], interface=INTERFACE))
    await checked(bus, call("Ping", interface="org.freedesktop.DBus.Peer"))


async def sequential(bus: MessageBus, count: int, offset: int) -> float:
    start = time.perf_counter()
    for source in sources(count, offset):
        await checked(bus, add_route(source))
    return time.perf_counter() - start


async def in_flight(bus: MessageBus, count: int, window: int) -> float:
    todo = iter(sources(count))

    async def worker() -> None:
        for source in todo:
            await checked(bus, add_route(source))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return time.perf_counter() - start


async def batch(bus: MessageBus, count: int) -> float:
    routes = [[s, GROUP, "up0", ["down0", "down1"], {}] for s in sources(count)]
    start = time.perf_counter()
    reply = await checked(
        bus, call("AddRoutes", "a(sssasa{sv})a{sv}", [routes, {}], interface=INTERFACE)
    )
    elapsed = time.perf_counter() - start
    assert reply.body[0] == count
    return elapsed


async def ping_floor(bus: MessageBus, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await checked(bus, call("Ping", interface="org.freedesktop.DBus.Peer"))
    return time.perf_counter() - start


async def connect_as(address: str, uid: int, gid: int) -> MessageBus:
    """A bus connection whose credentials are `uid` (SO_PEERCRED is taken at connect)."""
    os.setegid(gid)
    os.seteuid(uid)
    try:
        return await MessageBus(bus_address=address, auth=AuthExternal(uid=uid)).connect()
    finally:
        os.seteuid(0)
        os.setegid(0)


def check_authorization(subject: str) -> Message:
    return Message(
        destination=POLKIT_BUS_NAME, path=POLKIT_OBJECT_PATH, interface=POLKIT_INTERFACE,
        member="CheckAuthorization", signature="(sa{sv})sa{ss}us",
        body=[[POLKIT_SUBJECT_BUS_NAME, {"name": Variant("s", subject)}], ACTION_MANAGE_ROUTES,
              {}, 0, ""],
    )  # fmt: skip


async def polkit_floor(bus: MessageBus, subject: str, count: int) -> float:
    """polkitd alone: the check the service makes for each call of `subject`."""
    start = time.perf_counter()
    for _ in range(count):
        reply = await checked(bus, check_authorization(subject))
        if not reply.body[0][0]:
            raise RuntimeError(f"polkit does not authorize {subject}: {reply.body}")
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """The CPU time all of a process's threads have used (ns resolution: schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class ServiceCpu:
    """The service's CPU per call in the rounds measured: load-independent where the
    rates are not (the machine is shared), so changes to the call path show in it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.per_call_us: dict[str, float] = {}

    async def measured(self, what: str, count: int, run, root: MessageBus) -> float:
        await checked(root, call("Ping", interface="org.freedesktop.DBus.Peer"))
        before = cpu_seconds(self.pid)
        elapsed = await run()
        # The signals and audit lines go out after the replies: the Ping answers after them.
        await checked(root, call("Ping", interface="org.freedesktop.DBus.Peer"))
        used = (cpu_seconds(self.pid) - before) * 1e6 / count
        self.per_call_us[what] = min(used, self.per_call_us.get(what, float("inf")))
        return elapsed


async def best_rate(
    count: int, repeats: int, run, root: MessageBus, cpu: ServiceCpu, what: str
) -> float:
    """The best of `repeats` rounds (the machine is shared: noise only slows), each
    started on a quiet service with no routes; the service's least CPU per call too."""
    best = float("inf")
    for _ in range(repeats):
        best = min(best, await cpu.measured(what, count, run, root))
        await flush(root)
    return rate(count, best)


async def rule_in_effect(bus: MessageBus, subject: str, timeout: float = 10.0) -> None:
    """Wait until polkitd has read the example rule (inotify): it authorizes `subject`."""
    deadline = time.monotonic() + timeout
    while not (await checked(bus, check_authorization(subject))).body[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"polkitd did not apply the example rule within {timeout:g} s")
        await asyncio.sleep(0.05)


async def measure_service(
    bus: PrivateBus, user: ThrowawayUser, args, cpu: ServiceCpu
) -> dict[str, float]:
    root = await MessageBus(bus_address=bus.address).connect()
    unprivileged = await connect_as(bus.address, user.uid, user.gid)
    await rule_in_effect(root, unprivileged.unique_name)
    n = args.repeats
    figures: dict[str, float] = {}
    try:
        phases = [
            ("D-Bus Peer.Ping floor (calls/s)", args.calls, lambda: ping_floor(root, args.calls)),
            ("root sequential AddRoute", args.calls, lambda: sequential(root, args.calls, 0)),
            ("polkit CheckAuthorization floor for the user (calls/s)", args.user_calls,
             lambda: polkit_floor(root, unprivileged.unique_name, args.user_calls)),
            ("authorized user sequential AddRoute", args.user_calls,
             lambda: sequential(unprivileged, args.user_calls, 0)),
            ("root AddRoute, 100 in flight", args.batch, lambda: in_flight(root, args.batch, 100)),
            ("root AddRoutes batch", args.batch, lambda: batch(root, args.batch)),
        ]  # fmt: skip
        for what, count, run in phases:
            figures[what] = await best_rate(count, n, run, root, cpu, what)
    finally:
        unprivileged.disconnect()
        root.disconnect()
    return figures


def smcroute_interfaces(ctl: list[str]) -> str:
    shown = subprocess.run([*ctl, "show", "interfaces"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else ""


def measure_smcroute(lab: Lab, workdir: Path, count: int, batch_size: int) -> dict[str, float]:
    if shutil.which("smcrouted") is None or shutil.which("smcroutectl") is None:
        return {}
    conf, sock, pidfile = workdir / "smcroute.conf", workdir / "smcroute.sock", workdir / "pid"
    conf.write_text("")
    daemon = subprocess.Popen(
        ["ip", "netns", "exec", lab.rtr, "smcrouted", "-n", "-l", "err", "-f", str(conf),
         "-u", str(sock), "-P", str(pidfile), "-i", f"mfcbench{lab.suffix}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ctl = ["smcroutectl", "-u", str(sock)]
    try:
        # Ready once its socket answers and it has found the lab's interfaces.
        if not wait_until(lambda: "up0" in smcroute_interfaces(ctl), timeout=10):
            raise RuntimeError("smcrouted did not list up0 within 10 s")
        start = time.perf_counter()
        for source in sources(count):
            subprocess.run([*ctl, "add", "up0", source, GROUP, "down0", "down1"], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        per_process = rate(count, time.perf_counter() - start)
        for source in sources(count):
            subprocess.run([*ctl, "remove", "up0", source, GROUP], stdout=subprocess.DEVNULL)
        lines = "".join(
            f"add up0 {source} {GROUP} down0 down1\n" for source in sources(batch_size, count)
        )
        start = time.perf_counter()
        subprocess.run([*ctl, "-b"], input=lines, text=True, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        batched = rate(batch_size, time.perf_counter() - start)
    finally:
        terminate_pid(daemon.pid)
        daemon.wait()
    return {
        "smcroutectl, one process per route": per_process,
        f"smcroutectl -b batch of {batch_size}": batched,
    }


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        calls={"type": int, "default": 3000, "help": "sequential root calls (default 3000)"},
        user_calls={"type": int, "default": 1000, "help": "sequential user calls (1000)"},
        batch={"type": int, "default": 10_000, "help": "routes in flight/batch (10000)"},
        smcroute_calls={"type": int, "default": 1000, "help": "smcroutectl runs (1000)"},
        repeats={"type": int, "default": 3, "help": "rounds; the best is reported (3)"},
    )
    mfc_dbusd = str(Path(sys.executable).with_name("mfc-dbusd"))
    with Lab(downstreams=2) as lab, tempfile.TemporaryDirectory() as tmp, PrivateBus() as bus, \
            RealPolkit(bus) as polkit, ThrowawayUser() as user:  # fmt: skip
        polkit.install_example_rule(user.group)
        log = open(Path(tmp) / "mfc-dbusd.log", "w")  # the audit trail is on, as in service
        service = subprocess.Popen(
            ["ip", "netns", "exec", lab.rtr, mfc_dbusd, "--state-file", "none",
             "--log-level", "info", "--address", bus.address],
            env=bus.env(), stderr=log,
        )  # fmt: skip
        try:
            bus.wait_for_name(BUS_NAME)
            cpu = ServiceCpu(service.pid)  # `ip netns exec` execs mfc-dbusd: same PID
            figures = asyncio.run(measure_service(bus, user, args, cpu))
        finally:
            terminate_pid(service.pid)
            service.wait()
            log.close()
        audited = (Path(tmp) / "mfc-dbusd.log").read_text().count("mfc_dbus.audit")
        print(f"mfc-dbusd wrote {audited:,} audit lines")
        smcroute = measure_smcroute(lab, Path(tmp), args.smcroute_calls, args.batch)
        figures.update(smcroute)
    ping = figures["D-Bus Peer.Ping floor (calls/s)"]
    polkit = figures["polkit CheckAuthorization floor for the user (calls/s)"]
    batched = next((v for k, v in smcroute.items() if "-b" in k), None)
    ratios = {
        "root sequential AddRoute / Ping floor": (figures["root sequential AddRoute"] / ping, 0.6),
        "authorized user AddRoute / polkitd floor":
            (figures["authorized user sequential AddRoute"] / polkit, 0.85),
    }  # fmt: skip
    if batched:
        ratios["AddRoutes / smcroutectl -b"] = (figures["root AddRoutes batch"] / batched, 30.0)
    rows = [
        {
            "what": what,
            "per_s": value,
            "target_per_s": TARGETS.get(what),
            "meets_target": value >= TARGETS[what] if what in TARGETS else None,
        }
        for what, value in figures.items()
    ]
    rows += [
        {"what": what, "ratio": value, "target_ratio": floor, "meets_target": value >= floor}
        for what, (value, floor) in ratios.items()
    ]
    rows += [
        {"what": f"service CPU per call (us): {what}", "cpu_us": value}
        for what, value in cpu.per_call_us.items()
    ]
    report(
        "D-Bus service: routes (or calls) per second",
        rows,
        ["what", "per_s", "target_per_s", "ratio", "target_ratio", "cpu_us", "meets_target"],
        args.json,
    )


if __name__ == "__main__":
    main()
