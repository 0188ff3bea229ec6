"""Fuzzing the live service: seeded random calls, valid and invalid mixed, against the
real engine, kernel and bus. Afterwards: the same process still serves, its log shows
no exception that escaped the error boundary, every reply carried a documented error
name, and ListRoutes equals the kernel's own read-back."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant

from mfc_dbus.errors import ALL_ERRORS, MfcError
from mfc_dbus.names import BUS_NAME
from mfc_lab import Lab
from mfc_lab.daemon import kernel_entries

from .helpers import OLD_DBUS_FAST, Caller, add_veth_pairs, expected_kernel, require_root, served

# Every error name a caller may see: the contract's, and the bus library's answer to a
# signature no method has. MfcError's own name (...Error.Failed) means an internal error.
DOCUMENTED = {cls.dbus_name for cls in ALL_ERRORS if cls is not MfcError} | {
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.InvalidArgs",
}

GOOD_IFACES = ["up0", "down0", "down1", *[f"xv{n}" for n in range(8)]]
BAD_IFACES = ["", "x" * 16, "a/b", "é0", "sp ace", ".", "nosuch0", "gone1"]
if OLD_DBUS_FAST:  # this test's own client cannot send non-ASCII (see OLD_DBUS_FAST)
    BAD_IFACES.remove("é0")
GROUPS_V4 = ["233.252.0.1", "233.252.0.2", "239.1.2.3", "232.0.0.0/8", "239.9.0.0/16"]
GROUPS_V6 = ["ff3e::db8:1", "ff3e::db8:2", "ff05::1:3", "ff3e::/96"]
SOURCES_V4 = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "10.1.0.0/16", "*", ""]
SOURCES_V6 = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:9::/48", "*"]
BAD_ADDRESSES = ["", "x", "224.0.0.1", "ff02::1", "10.0.0.1", "233.252.0.1/40", "1:2:3",
                 "999.1.1.1", "233.252.0.1 ", "\u00e9", "::", "0.0.0.0/0"]  # fmt: skip
if OLD_DBUS_FAST:  # (test_bad_input.py sends such input to the service with gdbus)
    BAD_ADDRESSES.remove("\u00e9")
OPTION_KEYS = {"persistent": "b", "lease": "b", "table": "u", "family": "s",
               "ttl_threshold": "u", "bogus": "s"}  # fmt: skip
SIGNATURE_VALUES = {"b": [True, False], "u": [0, 1, 5, 255, 256, 2**32 - 1],
                    "s": ["ipv4", "ipv6", "", "ipx"], "i": [-1, 7], "t": [3]}  # fmt: skip


class Generator:
    """Random calls from a seed; about half are valid."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, items: list[Any]) -> Any:
        return self.rng.choice(items)

    def options(self, keys: list[str], valid: bool) -> dict[str, Variant]:
        options: dict[str, Variant] = {}
        for _ in range(self.rng.randrange(3)):
            key = self.pick(keys) if valid else self.pick(list(OPTION_KEYS))
            signature = OPTION_KEYS[key] if valid else self.pick(list(SIGNATURE_VALUES))
            value = self.pick(SIGNATURE_VALUES[signature])
            if key == "table" and valid:
                value = self.pick([0, 0, 0, 5])
            if key == "family" and valid:
                value = self.pick(["ipv4", "ipv6"])
            if key == "ttl_threshold" and valid:
                value = self.rng.randint(1, 255)
            options[key] = Variant(signature, value)
        if valid and options.get("lease") == Variant("b", True):
            options.pop("persistent", None)
        return options

    def route(self, valid: bool) -> list[Any]:
        v6 = self.rng.random() < 0.35
        source = self.pick(SOURCES_V6 if v6 else SOURCES_V4)
        group = self.pick(GROUPS_V6 if v6 else GROUPS_V4)
        ifaces = self.rng.sample(GOOD_IFACES, self.rng.randint(2, 4))
        input_, outputs = ifaces[0], ifaces[1:]
        if not valid:
            what = self.rng.randrange(6)
            if what == 0:
                source = self.pick(BAD_ADDRESSES)
            elif what == 1:
                group = self.pick(BAD_ADDRESSES)
            elif what == 2:
                input_ = self.pick(BAD_IFACES)
            elif what == 3:
                outputs = [*outputs, self.pick([*BAD_IFACES, input_, outputs[0]])]
            elif what == 4:
                outputs = []
            else:
                source = self.pick(SOURCES_V4 if v6 else SOURCES_V6)  # mixed families
        return [source, group, input_, outputs,
                self.options(["persistent", "lease", "table"], valid)]  # fmt: skip

    def call(self) -> tuple[str, str, list[Any]]:
        valid = self.rng.random() < 0.5
        roll = self.rng.random()
        if roll < 0.30:
            return "AddRoute", "sssasa{sv}", self.route(valid)
        if roll < 0.38:
            routes = [tuple(self.route(valid or self.rng.random() < 0.8))
                      for _ in range(self.rng.randint(1, 8))]  # fmt: skip
            return "AddRoutes", "a(sssasa{sv})a{sv}", [routes, self.options(["persistent"], True)]
        if roll < 0.62:
            source, group, *_ = self.route(valid)
            return "RemoveRoute", "ssa{sv}", [source, group, self.options(["table"], valid)]
        if roll < 0.70:
            name = self.pick(GOOD_IFACES if valid else BAD_IFACES + GOOD_IFACES)
            keys = ["family", "table", "ttl_threshold", "persistent"]
            return "AddVif", "sa{sv}", [name, self.options(keys, valid)]
        if roll < 0.78:
            name = self.pick(GOOD_IFACES if valid else BAD_IFACES)
            return "RemoveVif", "sa{sv}", [name, self.options(["family", "table"], valid)]
        if roll < 0.80:
            return "Flush", "a{sv}", [self.options(["family", "table"], valid)]
        if roll < 0.90:
            member = self.pick(["ListRoutes", "ListVifs"])
            return member, "a{sv}", [self.options(["family", "table"], valid)]
        if roll < 0.95:  # a wrong signature for a real method
            member = self.pick(["AddRoute", "RemoveRoute", "AddVif", "Flush", "ListRoutes"])
            return member, "s", ["x"]
        return "Reload", "", []


async def fuzz(address: str, calls: int, seed: int, in_flight: int = 16) -> Counter[str]:
    """Send `calls` generated calls, `in_flight` at a time; count the reply names."""
    generator = Generator(seed)
    caller = await Caller.connect(address)
    outcomes: Counter[str] = Counter()
    try:
        for start in range(0, calls, in_flight):
            batch = [generator.call() for _ in range(min(in_flight, calls - start))]
            replies: list[Message] = await asyncio.gather(*(caller.call(*call) for call in batch))
            for (member, _, body), reply in zip(batch, replies, strict=True):
                name = reply.error_name if reply.message_type is MessageType.ERROR else "ok"
                assert name == "ok" or name in DOCUMENTED, (member, body, name, reply.body)
                outcomes[name] += 1
        # The end state, for the comparison with the kernel.
        outcomes["routes"] = len(await caller.list_routes())
    finally:
        caller.close()
    return outcomes


def run_fuzz(tmp_path: Path, calls: int, seed: int) -> None:
    require_root()
    with Lab(downstreams=2) as lab:
        add_veth_pairs(lab, 4)
        with served(tmp_path, lab) as (bus, service):
            pid = service.pid
            started = time.monotonic()
            outcomes = asyncio.run(fuzz(bus.address, calls, seed))
            elapsed = time.monotonic() - started
            print(f"fuzz seed {seed}: {calls} calls in {elapsed:.1f} s "
                  f"({calls / elapsed:,.0f}/s): {dict(outcomes)}")  # fmt: skip
            assert sum(n for name, n in outcomes.items() if name != "routes") == calls
            assert outcomes["ok"] > calls // 5, outcomes  # the valid half mostly works
            assert outcomes["org.mfc.Forwarding1.Error.InvalidArgument"] > calls // 10
            assert service.alive() and bus.owner_pid(BUS_NAME) == pid
            assert service.unhandled() == [], service.log_tail()

            async def listed() -> list[Any]:
                caller = await Caller.connect(bus.address)
                try:
                    return await caller.list_routes()
                finally:
                    caller.close()

            routes = asyncio.run(listed())
            assert expected_kernel(routes) == kernel_entries(lab)
            # The state survives a clean restart: the same persistent routes come back.
            persistent = {
                (r[0], r[1], r[4]["table"].value)
                for r in routes
                if r[4]["persistent"].value and r[4]["state"].value != "learned"
            }
            service.stop()
            service.start()
            again = asyncio.run(listed())
            assert {(r[0], r[1], r[4]["table"].value) for r in again} == persistent
            assert expected_kernel(again) == kernel_entries(lab)


@pytest.mark.root
def test_fuzz_short(tmp_path: Path) -> None:
    run_fuzz(tmp_path, 600, seed=1)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("seed", [7])
def test_fuzz_10000_calls(tmp_path: Path, seed: int) -> None:
    run_fuzz(tmp_path, 10_000, seed)
