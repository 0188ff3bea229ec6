"""`make demo`: real multicast forwarded through org.mfc.Forwarding1, narrated.

Builds the lab (namespaces src -> rtr -> dst0), a private system bus with the
project's own policy and activation file, the real polkitd with the project's
actions and example rule, and two throwaway users: one in the authorized group and
one outside it. Exits 0 only if forwarding through the service was proven; removes
everything it created, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from mfc_dbus.names import BUS_NAME

from .bus import PrivateBus
from .netns import Lab, Receiver
from .polkit import RealPolkit, ThrowawayUser
from .users import client_argv, client_env

MFC_DBUSD = Path(sys.executable).with_name("mfc-dbusd")
FIRST_PACKET_SOURCES = 10
PACKETS_PER_SOURCE = 20


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"    {line}")
    sys.stdout.flush()


@dataclass
class Figures:
    sent: int = 0
    delivered: int = 0
    first_packet_ms: list[float] = field(default_factory=list)
    first_packets_lost: int = 0
    after_removal_delivered: int = 0
    outsider_refused: bool = False
    problems: list[str] = field(default_factory=list)

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)
            print(f"    !! {problem}")


class Demo:
    def __init__(self, stack: ExitStack, figures: Figures) -> None:
        say("Building the lab: namespaces src -> rtr -> dst0 joined by veth pairs")
        self.lab = stack.enter_context(Lab(downstreams=1))
        show(
            f"src  {self.lab.src}: eth0 192.0.2.1 (the sender)\n"
            f"rtr  {self.lab.rtr}: up0 192.0.2.254, down0 198.51.100.254 (the service runs here)\n"
            f"dst0 {self.lab.dst(0)}: eth0 198.51.100.1 (the receiver)"
        )
        say("Starting a private system bus with the project's own policy (dbus/)")
        self.bus = stack.enter_context(PrivateBus())
        self.state_dir = Path(tempfile.mkdtemp(prefix="mfc-demo-state-"))
        stack.callback(shutil.rmtree, self.state_dir, ignore_errors=True)
        argv = [shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.lab.rtr,
                str(MFC_DBUSD), "--state-file", str(self.state_dir / "state.json")]  # fmt: skip
        activation = self.bus.add_activation(BUS_NAME, argv)
        stack.callback(self.bus.stop_owner, BUS_NAME)
        show(f"bus: {self.bus.address}\nactivation file: {activation}")
        show(activation.read_text())
        say("Starting the real polkitd with the project's actions (polkit/)")
        self.polkit = stack.enter_context(RealPolkit(self.bus))
        self.user = stack.enter_context(ThrowawayUser())
        self.outsider = stack.enter_context(ThrowawayUser())
        rule = self.polkit.install_example_rule(self.user.group)
        show(
            f"demo user {self.user.name} (uid {self.user.uid}) in group {self.user.group}\n"
            f"example rule {rule.name} grants that group both mfc-dbus actions\n"
            f"outsider {self.outsider.name} (uid {self.outsider.uid}) is in no such group"
        )
        self.figures = figures

    def mfc(self, user: ThrowawayUser, *args: str) -> subprocess.CompletedProcess[str]:
        print(f"    $ mfc-dbus {' '.join(args)}    # as {user.name}")
        result = user.run(
            [*client_argv(), *args],
            env=client_env(self.bus),
            cwd="/",
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        show(result.stdout)
        show(result.stderr)
        if result.returncode:
            print(f"    (exit code {result.returncode})")
        return result

    def run(self) -> None:
        lab, figures, group = self.lab, self.figures, Lab.group()
        say("The first call activates the service: mfc-dbus vif show")
        figures.check(self.bus.owner_pid(BUS_NAME) is None, "the service ran before any call")
        result = self.mfc(self.user, "vif", "show")
        pid = self.bus.owner_pid(BUS_NAME)
        figures.check(result.returncode == 0, "vif show failed")
        figures.check(pid is not None, "the first call did not activate the service")
        show(f"mfc-dbusd is running as PID {pid} in {lab.rtr}")

        say(f"As {self.user.name}: a (*,G) route for {group}, any source, up0 -> down0")
        result = self.mfc(self.user, "route", "add", group, "iif", "up0", "oif", "down0")
        figures.check(result.returncode == 0, "the authorized user could not add the route")
        say("The service allocated a VIF for each interface the route names")
        result = self.mfc(self.user, "vif", "show")
        figures.check("up0" in result.stdout and "down0" in result.stdout, "VIFs not allocated")

        say(
            f"{FIRST_PACKET_SOURCES} new sources in src each send {PACKETS_PER_SOURCE} "
            "packets (TTL 8); the receiver in dst0 counts them"
        )
        with lab.receiver(0) as receiver:
            self.send_from_new_sources(receiver, group)
            show(
                f"sent {figures.sent}, delivered {figures.delivered}; first packet of each "
                f"new source: median {statistics.median(figures.first_packet_ms):.2f} ms, "
                f"max {max(figures.first_packet_ms):.2f} ms, "
                f"lost {figures.first_packets_lost}"
            )
        figures.check(figures.delivered == figures.sent, "not every packet was delivered")
        figures.check(figures.first_packets_lost == 0, "a first packet was lost")

        say("mfc-dbus show -s: the routes and their counters, as the service sees them")
        result = self.mfc(self.user, "-s", "show")
        figures.check(result.returncode == 0 and "learned" in result.stdout,
                      "show -s does not list the learned flows")  # fmt: skip
        say(f"ip mroute show in {lab.rtr}: the kernel's own table agrees")
        kernel = lab.mroute_show()
        show(kernel)
        figures.check(kernel.count(group) == FIRST_PACKET_SOURCES,
                      "the kernel does not hold one entry per source")  # fmt: skip

        say(f"{self.outsider.name}, outside the group, tries to add a route")
        result = self.mfc(self.outsider, "route", "add", "233.252.0.2", "iif", "up0",
                          "oif", "down0")  # fmt: skip
        # Exit code 4: refused by polkit (without a terminal no password can be asked).
        figures.outsider_refused = result.returncode == 4 and "manage-routes" in result.stderr
        figures.check(figures.outsider_refused, "the outsider was not refused")

        say("The route is removed; the traffic stops")
        result = self.mfc(self.user, "route", "del", group)
        figures.check(result.returncode == 0, "route del failed")
        with lab.receiver(0) as receiver, lab.sender() as sender:
            sender.send(group, PACKETS_PER_SOURCE)
            figures.after_removal_delivered = receiver.settle(0.5)
        show(f"sent {PACKETS_PER_SOURCE} more, delivered {figures.after_removal_delivered}")
        figures.check(figures.after_removal_delivered == 0, "traffic still flows")
        figures.check(group not in lab.mroute_show(), "the kernel still holds the route")

    def send_from_new_sources(self, receiver: Receiver, group: str) -> None:
        """Each new source sends one packet, timed to its arrival, then the rest."""
        figures = self.figures
        for n in range(FIRST_PACKET_SOURCES):
            source = self.lab.add_source("ipv4", n)
            with self.lab.sender(source=source) as sender:
                receiver.settle(0.1)  # nothing of the previous source still in flight
                first = f"first from {source}".encode()
                started = time.monotonic()
                sender.send(group, 1, payload=first)
                arrived = self.arrival(receiver, first, timeout=1.0)
                if arrived is None:
                    figures.first_packets_lost += 1
                else:
                    figures.first_packet_ms.append((arrived - started) * 1e3)
                sender.send(group, PACKETS_PER_SOURCE - 1)
                figures.sent += PACKETS_PER_SOURCE
        figures.delivered = receiver.settle(0.5)

    @staticmethod
    def arrival(receiver: Receiver, payload: bytes, timeout: float) -> float | None:
        """When the datagram carrying `payload` arrived, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for data, _, when in reversed(receiver.received):
                if data == payload:
                    return when
            if time.monotonic() > deadline:
                return None
            receiver.wait(len(receiver.received) + 1, timeout=0.05)


def summary(figures: Figures) -> None:
    say("Summary")
    latency = (
        f"median {statistics.median(figures.first_packet_ms):.2f} ms, "
        f"max {max(figures.first_packet_ms):.2f} ms"
        if figures.first_packet_ms
        else "n/a"
    )
    show(
        f"packets sent                 {figures.sent}\n"
        f"packets delivered            {figures.delivered}\n"
        f"first packets lost           {figures.first_packets_lost} of {FIRST_PACKET_SOURCES}\n"
        f"first-packet latency         {latency}\n"
        f"delivered after removal      {figures.after_removal_delivered}\n"
        f"outsider refused             {'yes' if figures.outsider_refused else 'no'}"
    )
    if figures.problems:
        print("\nFAILED: " + "; ".join(figures.problems))
    else:
        print(
            "\nPASSED: multicast was forwarded through org.mfc.Forwarding1 and stopped on removal"
        )


def _terminate(signum: int, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="make demo", description=__doc__).parse_args(argv)
    if os.geteuid() != 0:
        print("make demo: needs root (network namespaces, a system bus, polkitd, users)")
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    figures = Figures()
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            Demo(stack, figures).run()
            say("Removing everything the demo created")
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo created was removed")
        return 130
    except Exception as exc:  # the demo must clean up and say why, whatever failed
        figures.problems.append(f"{type(exc).__name__}: {exc}")
    summary(figures)
    print(f"({time.monotonic() - started:.1f} s)")
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
