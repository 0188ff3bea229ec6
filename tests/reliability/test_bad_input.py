"""Bad input over D-Bus, against the real service, kernel and bus.

Every row is one bad call. Each must be answered with its documented error name and
a message that names the offending value; afterwards the service is still the same
process and neither the kernel's table (MFC entries and VIFs, read back from the
kernel) nor the service's own lists changed. Wrong argument types never reach the
service's code: they are answered with the D-Bus standard InvalidArgs naming the
signature that was sent and the one the contract expects.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dbus_fast import MessageType, Variant

from mfc_dbus.model import MAX_VIFS
from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH, PENDING_VIF_INDEX
from mfc_lab import Lab, netns_run
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import ServiceProcess, kernel_entries

from .helpers import OLD_DBUS_FAST, Caller, add_veth_pairs, require_root, served

E = "org.mfc.Forwarding1.Error."
INVALID, NOT_FOUND, LIMIT = E + "InvalidArgument", E + "NotFound", E + "LimitExceeded"
ALREADY = E + "AlreadyExists"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
S4, G4, S6, G6 = "192.0.2.1", "233.252.0.1", "2001:db8:1::1", "ff3e::db8:1"
ROUTE = "sssasa{sv}"
OUTPUTS = "ssasa{sv}"
EXTRA = [f"xv{n}" for n in range(40)]  # 40 extra interfaces in the router namespace


@dataclass
class World:
    lab: Lab
    bus: PrivateBus
    service: ServiceProcess


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_root()
    tmp = tmp_path_factory.mktemp("bad-input")
    with Lab(downstreams=2) as lab:
        assert add_veth_pairs(lab, 20) == EXTRA
        with served(tmp, lab) as (bus, service):
            asyncio.run(_baseline(bus.address))
            yield World(lab, bus, service)
            assert service.unhandled() == [], service.log_tail()


async def _baseline(address: str) -> None:
    caller = await Caller.connect(address)
    try:
        await caller.ok("AddVif", "sa{sv}", ["up0", {}])
        await caller.ok("AddRoute", ROUTE, [S4, G4, "up0", ["down0"], {}])
        await caller.ok("AddRoute", ROUTE, [S6, G6, "up0", ["down0", "down1"], {}])
        await caller.ok("AddRoute", ROUTE, ["*", "239.1.1.1", "up0", ["down1"], {}])
        await caller.ok("AddRoute", ROUTE, ["10.9.0.0/16", "232.9.9.9", "down0", ["down1"], {}])
    finally:
        caller.close()


def v(signature: str, value: Any) -> Variant:
    return Variant(signature, value)


def add(source: str = S4, group: str = G4, input: str = "up0",
        outputs: list[str] | None = None, options: dict | None = None) -> list[Any]:  # fmt: skip
    return [source, group, input, ["down0"] if outputs is None else outputs, options or {}]


def batch(*routes: list[Any], options: dict | None = None) -> list[Any]:
    return [[tuple(route) for route in routes], options or {}]


HUGE = 100_000
# (id, member, signature, body, error name, text the message must contain)
CASES: list[tuple[str, str, str, Any, str, str]] = [
    # -- groups --------------------------------------------------------------------------
    ("group-empty", "AddRoute", ROUTE, add(group=""), INVALID, "group is empty"),
    ("group-blank", "AddRoute", ROUTE, add(group="   "), INVALID, "group is empty"),
    ("group-garbage", "AddRoute", ROUTE, add(group="not-an-ip"), INVALID, "not-an-ip"),
    ("group-unicast-v4", "AddRoute", ROUTE, add(group="192.0.2.55"), INVALID, "192.0.2.55"),
    ("group-unicast-v6", "AddRoute", ROUTE, add(S6, "2001:db8::5"), INVALID, "2001:db8::5"),
    ("group-link-local", "AddRoute", ROUTE, add(group="224.0.0.5"), INVALID, "224.0.0.5"),
    ("group-link-local-prefix", "AddRoute", ROUTE, add(group="224.0.0.0/24"), INVALID,
     "224.0.0.0/24"),
    ("group-covers-link-local", "AddRoute", ROUTE, add(group="224.0.0.0/4"), INVALID,
     "224.0.0.0/4"),
    ("group-v6-link-scope", "AddRoute", ROUTE, add(S6, "ff02::1"), INVALID, "ff02::1"),
    ("group-v6-node-scope", "AddRoute", ROUTE, add(S6, "ff01::fb"), INVALID, "ff01::fb"),
    ("group-v6-short-prefix", "AddRoute", ROUTE, add(S6, "ff00::/8"), INVALID, "ff00::/8"),
    ("group-prefix-33", "AddRoute", ROUTE, add(group=G4 + "/33"), INVALID, G4 + "/33"),
    ("group-prefix-negative", "AddRoute", ROUTE, add(group=G4 + "/-1"), INVALID, G4 + "/-1"),
    ("group-prefix-129", "AddRoute", ROUTE, add(S6, G6 + "/129"), INVALID, G6 + "/129"),
    ("group-with-port", "AddRoute", ROUTE, add(group=G4 + ":5001"), INVALID, G4 + ":5001"),
    ("group-non-ascii", "AddRoute", ROUTE, add(group="２３３.1.1.1"), INVALID,
     "\\uff12\\uff13\\uff13.1.1.1"),
    # -- sources -------------------------------------------------------------------------
    ("source-garbage", "AddRoute", ROUTE, add(source="host.example"), INVALID, "host.example"),
    ("source-prefix-33", "AddRoute", ROUTE, add(source="10.0.0.0/33"), INVALID, "10.0.0.0/33"),
    ("source-prefix-200", "AddRoute", ROUTE, add(S6 + "/200", G6), INVALID, S6 + "/200"),
    ("source-multicast", "AddRoute", ROUTE, add(source="233.252.0.9"), INVALID, "233.252.0.9"),
    ("source-v6-multicast", "AddRoute", ROUTE, add("ff3e::9", G6), INVALID, "ff3e::9"),
    # -- mixed families ----------------------------------------------------------------
    ("mixed-v6-source-v4-group", "AddRoute", ROUTE, add(S6, G4), INVALID, S6),
    ("mixed-v4-source-v6-group", "AddRoute", ROUTE, add(S4, G6), INVALID, G6),
    ("mixed-remove", "RemoveRoute", "ssa{sv}", [S4, G6, {}], INVALID, G6),
    # -- interface names ---------------------------------------------------------------
    ("input-empty", "AddRoute", ROUTE, add(input=""), INVALID, "interface name is empty"),
    ("input-16-chars", "AddRoute", ROUTE, add(input="x" * 16), INVALID, "x" * 16),
    ("input-300-chars", "AddRoute", ROUTE, add(input="y" * 300), INVALID, "y" * 300),
    ("input-slash", "AddRoute", ROUTE, add(input="eth/0"), INVALID, "eth/0"),
    ("input-space", "AddRoute", ROUTE, add(input="eth 0"), INVALID, "eth 0"),
    ("input-colon", "AddRoute", ROUTE, add(input="eth0:1"), INVALID, "eth0:1"),
    ("input-dot", "AddRoute", ROUTE, add(input="."), INVALID, "'.'"),
    ("input-dotdot", "AddRoute", ROUTE, add(input=".."), INVALID, "'..'"),
    ("input-non-ascii", "AddRoute", ROUTE, add(input="éth0"), INVALID, "\\xe9th0"),
    ("input-control", "AddRoute", ROUTE, add(input="eth\x070"), INVALID, "eth\\x070"),
    ("output-empty", "AddRoute", ROUTE, add(outputs=["down0", ""]), INVALID, "empty"),
    ("output-non-ascii", "AddRoute", ROUTE, add(outputs=["dówn0"]), INVALID, "d\\xf3wn0"),
    ("output-over-long", "AddRoute", ROUTE, add(outputs=["z" * 64]), INVALID, "z" * 64),
    ("output-newline", "AddRoute", ROUTE, add(outputs=["down\n0"]), INVALID, "down\\n0"),
    # -- outputs -----------------------------------------------------------------------
    ("output-twice", "AddRoute", ROUTE, add(outputs=["down0", "down0"]), INVALID, "down0"),
    ("40-outputs", "AddRoute", ROUTE, add(outputs=EXTRA), LIMIT, "32 per family"),
    ("huge-outputs", "AddRoute", ROUTE, add(outputs=[f"o{n}" for n in range(HUGE)]), LIMIT,
     f"{HUGE + 3} interfaces"),
    # -- options -------------------------------------------------------------------------
    ("option-unknown", "AddRoute", ROUTE, add(options={"bogus": v("b", True)}), INVALID,
     "'bogus'"),
    ("option-persistent-str", "AddRoute", ROUTE, add(options={"persistent": v("s", "yes")}),
     INVALID, "'persistent'"),
    ("option-lease-uint", "AddRoute", ROUTE, add(options={"lease": v("u", 1)}), INVALID,
     "'lease'"),
    ("option-table-str", "AddRoute", ROUTE, add(options={"table": v("s", "10")}), INVALID,
     "'table'"),
    ("option-table-int", "AddRoute", ROUTE, add(options={"table": v("i", -1)}), INVALID,
     "'table'"),
    ("option-table-nested", "AddRoute", ROUTE,
     add(options={"table": v("v", v("u", 1))}), INVALID, "'table'"),
    ("option-lease-and-persistent", "AddRoute", ROUTE,
     add(options={"lease": v("b", True), "persistent": v("b", True)}), INVALID, "conflict"),
    ("option-family-on-add", "AddRoute", ROUTE, add(options={"family": v("s", "ipv4")}),
     INVALID, "'family'"),
    # -- batches -------------------------------------------------------------------------
    ("batch-bad-group", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(add(group="239.2.2.2"), add(group="239.3.3.3"), add(group="10.0.0.1")), INVALID,
     "#2"),
    ("batch-bad-option", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(add(group="239.2.2.2"), options={"ttl": v("u", 3)}), INVALID, "'ttl'"),
    ("batch-route-option-type", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(add(group="239.2.2.2"), add(group="239.3.3.3", options={"table": v("b", True)})),
     INVALID, "#1"),
    ("batch-huge-last-bad", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(*[add(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", "239.4.4.4")
             for n in range(1, HUGE)], add(group="239.4.4.4/40")),
     INVALID, f"#{HUGE - 1}"),
    ("batch-over-vif-limit", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(*[add(group=f"239.5.5.{n}", input="up0", outputs=[EXTRA[n]]) for n in range(40)]),
     LIMIT, "32"),
    # -- removals --------------------------------------------------------------------------
    ("remove-missing", "RemoveRoute", "ssa{sv}", [S4, "239.9.9.9", {}], NOT_FOUND, "239.9.9.9"),
    ("remove-other-table", "RemoveRoute", "ssa{sv}", [S4, G4, {"table": v("u", 5)}], NOT_FOUND,
     G4),
    ("remove-missing-source", "RemoveRoute", "ssa{sv}", ["192.0.2.99", G4, {}], NOT_FOUND,
     "192.0.2.99"),
    ("remove-other-input", "RemoveRoute", "ssa{sv}", [S4, G4, {"input": v("s", "down1")}],
     NOT_FOUND, "comes from 'up0', not 'down1'"),
    ("remove-template-other-input", "RemoveRoute", "ssa{sv}",
     ["*", "239.1.1.1", {"input": v("s", "down0")}], NOT_FOUND, "configured from 'up0'"),
    ("remove-bad-input", "RemoveRoute", "ssa{sv}", [S4, G4, {"input": v("s", "up 0")}],
     INVALID, "'up 0'"),
    ("remove-input-type", "RemoveRoute", "ssa{sv}", [S4, G4, {"input": v("u", 1)}], INVALID,
     "'input'"),
    ("exact-from-another-input", "AddRoute", ROUTE, add(input="down1"), ALREADY,
     "exists from input 'up0'"),
    ("batch-exact-from-another-input", "AddRoutes", "a(sssasa{sv})a{sv}",
     batch(add(group="239.2.2.2"), add(input="down1")), ALREADY, "'down1'"),
    ("replace-type", "AddRoute", ROUTE, add(input="down1", options={"replace": v("s", "yes")}),
     INVALID, "'replace'"),
    ("remove-bad-group", "RemoveRoute", "ssa{sv}", [S4, "1.2.3.4", {}], INVALID, "1.2.3.4"),
    ("remove-option-family", "RemoveRoute", "ssa{sv}", [S4, G4, {"family": v("s", "ipv4")}],
     INVALID, "'family'"),
    ("remove-table-type", "RemoveRoute", "ssa{sv}", [S4, G4, {"table": v("t", 0)}], INVALID,
     "'table'"),
    # -- single outputs ----------------------------------------------------------------------
    ("outputs-no-route", "AddOutputs", OUTPUTS, [S4, "239.9.9.9", ["down1"], {}], NOT_FOUND,
     "239.9.9.9"),
    ("outputs-other-input", "AddOutputs", OUTPUTS, [S4, G4, ["down1"], {"input": v("s", "down0")}],
     NOT_FOUND, "comes from 'up0', not 'down0'"),
    ("outputs-none", "AddOutputs", OUTPUTS, [S4, G4, [], {}], INVALID, "no output interface"),
    ("outputs-bad-name", "RemoveOutputs", OUTPUTS, [S4, G4, ["down0", "a/b"], {}], INVALID, "a/b"),
    ("outputs-input-type", "RemoveOutputs", OUTPUTS, [S4, G4, ["down0"], {"input": v("u", 1)}],
     INVALID, "'input'"),
    ("outputs-family-key", "AddOutputs", OUTPUTS, [S4, G4, ["down1"], {"family": v("s", "ipv4")}],
     INVALID, "'family'"),
    ("flush-bad-family", "Flush", "a{sv}", [{"family": v("s", "ipv5")}], INVALID, "ipv5"),
    ("flush-unknown-key", "Flush", "a{sv}", [{"force": v("b", True)}], INVALID, "'force'"),
    ("flush-table-type", "Flush", "a{sv}", [{"table": v("s", "all")}], INVALID, "'table'"),
    # -- reads -----------------------------------------------------------------------------
    ("list-bad-family", "ListRoutes", "a{sv}", [{"family": v("s", "inet")}], INVALID, "inet"),
    ("list-unknown-key", "ListRoutes", "a{sv}", [{"state": v("s", "x")}], INVALID, "'state'"),
    ("listvifs-empty-family", "ListVifs", "a{sv}", [{"family": v("s", "")}], INVALID, "''"),
    ("listvifs-unknown-key", "ListVifs", "a{sv}", [{"index": v("u", 1)}], INVALID, "'index'"),
    # -- VIFs ------------------------------------------------------------------------------
    ("vif-empty-name", "AddVif", "sa{sv}", ["", {}], INVALID, "interface name is empty"),
    ("vif-long-name", "AddVif", "sa{sv}", ["v" * 20, {}], INVALID, "v" * 20),
    ("vif-non-ascii", "AddVif", "sa{sv}", ["ethé", {}], INVALID, "eth\\xe9"),
    ("vif-ttl-0", "AddVif", "sa{sv}", ["down1", {"ttl_threshold": v("u", 0)}], INVALID,
     "threshold 0"),
    ("vif-ttl-256", "AddVif", "sa{sv}", ["down1", {"ttl_threshold": v("u", 256)}], INVALID,
     "256"),
    ("vif-ttl-type", "AddVif", "sa{sv}", ["down1", {"ttl_threshold": v("s", "1")}], INVALID,
     "'ttl_threshold'"),
    ("vif-bad-family", "AddVif", "sa{sv}", ["down1", {"family": v("s", "ipv7")}], INVALID,
     "ipv7"),
    ("vif-unknown-key", "AddVif", "sa{sv}", ["down1", {"lease": v("b", True)}], INVALID,
     "'lease'"),
    ("removevif-missing", "RemoveVif", "sa{sv}", ["xv5", {}], NOT_FOUND, "xv5"),
    ("removevif-other-family", "RemoveVif", "sa{sv}", ["xv6", {"family": v("s", "ipv6")}],
     NOT_FOUND, "xv6"),
    ("removevif-other-table", "RemoveVif", "sa{sv}", ["up0", {"table": v("u", 3)}],
     NOT_FOUND, "up0"),
    ("removevif-in-use", "RemoveVif", "sa{sv}", ["up0", {}], INVALID, "up0"),
    ("removevif-allocated-in-use", "RemoveVif", "sa{sv}", ["down1", {}], INVALID, "down1"),
    ("removevif-empty", "RemoveVif", "sa{sv}", ["", {}], INVALID, "interface name is empty"),
    ("removevif-bad-family", "RemoveVif", "sa{sv}", ["up0", {"family": v("s", "x")}], INVALID,
     "'x'"),
    # -- wrong argument types (answered before any handler) -----------------------------------
    ("type-addroute-sss", "AddRoute", "sss", [S4, G4, "up0"], INVALID_ARGS,
     "(sssasa{sv}), not (sss)"),
    ("type-addroute-dict-ss", "AddRoute", "sssasa{ss}", [S4, G4, "up0", ["down0"], {}],
     INVALID_ARGS, "not (sssasa{ss})"),
    ("type-outputs-string", "AddRoute", "sssss", [S4, G4, "up0", "down0", ""], INVALID_ARGS,
     "not (sssss)"),
    ("type-addroutes-flat", "AddRoutes", "a(sssas)a{sv}", [[], {}], INVALID_ARGS,
     "not (a(sssas)a{sv})"),
    ("type-remove-no-options", "RemoveRoute", "ss", [S4, G4], INVALID_ARGS, "not (ss)"),
    ("type-addoutputs-string", "AddOutputs", "sssa{sv}", [S4, G4, "down1", {}], INVALID_ARGS,
     "not (sssa{sv})"),
    ("type-addvif-uint", "AddVif", "ua{sv}", [3, {}], INVALID_ARGS, "not (ua{sv})"),
    ("type-flush-none", "Flush", "", [], INVALID_ARGS, "Flush takes (a{sv}), not ()"),
    ("type-list-string", "ListRoutes", "s", ["ipv4"], INVALID_ARGS, "not (s)"),
    ("type-reload-arg", "Reload", "s", ["now"], INVALID_ARGS, "not (s)"),
    ("unknown-method", "DropTable", "", [], UNKNOWN_METHOD, "DropTable"),
]  # fmt: skip


def _snapshot(world: World) -> tuple[Any, ...]:
    """What must not change: kernel MFC entries and VIF/MIF tables (read from the
    kernel), and the service's own routes and VIFs (without counters)."""

    async def lists() -> tuple[Any, Any]:
        caller = await Caller.connect(world.bus.address)
        try:
            routes = await caller.list_routes()
            vifs = (await caller.ok("ListVifs", "a{sv}", [{}]))[0]
        finally:
            caller.close()
        return (
            sorted((r[0], r[1], r[2], tuple(r[3]), r[4]["state"].value) for r in routes),
            sorted((name, index) for name, index, _ in vifs),
        )

    vif_tables = tuple(
        netns_run(world.lab.rtr, "cat", f"/proc/net/{table}").stdout.splitlines()
        for table in ("ip_mr_vif", "ip6_mr_vif")
    )
    # Counters move only with traffic, and the lab sends none here.
    return kernel_entries(world.lab), vif_tables, asyncio.run(lists())


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)


def _gvariant(value: Any) -> str:
    """GVariant text for the strings, string lists and empty dicts of the non-ASCII
    cases (what gdbus takes on its command line)."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(map(_gvariant, value)) + "]" if value else "@as []"
    assert value == {}, value
    return "@a{sv} {}"


def _call_with_gdbus(world: World, member: str, body: list[Any]) -> tuple[str, str]:
    """The error name and text of a call sent by gdbus (GLib's own marshalling)."""
    done = subprocess.run(
        ["gdbus", "call", "--address", world.bus.address, "--dest", BUS_NAME,
         "--object-path", OBJECT_PATH, "--method", f"{INTERFACE}.{member}",
         *map(_gvariant, body)], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0, f"{member} accepted {body!r:.200}"
    prefix = "GDBus.Error:"
    text = done.stderr.strip()
    assert prefix in text, text
    name, _, message = text.split(prefix, 1)[1].partition(": ")
    return name, message


@pytest.mark.root
@pytest.mark.parametrize(
    "member,signature,body,error,needle", [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_bad_input_is_refused_by_name_and_changes_nothing(
    request, world: World, member: str, signature: str, body: Any, error: str, needle: str
) -> None:
    before = _snapshot(world)
    pid = world.service.pid

    async def call() -> Any:
        caller = await Caller.connect(world.bus.address)
        try:
            return await caller.call(member, signature, body)
        finally:
            caller.close()

    if OLD_DBUS_FAST and request.node.callspec.id.endswith("non-ascii"):
        # This dbus-fast cannot send non-ASCII text (see OLD_DBUS_FAST): gdbus sends it.
        name, message = _call_with_gdbus(world, member, body)
    else:
        reply = asyncio.run(call())
        assert reply.message_type is MessageType.ERROR, f"{member} accepted {body!r:.200}"
        name, message = reply.error_name, reply.body[0] if reply.body else ""
    assert (name, needle in message) == (error, True), message[:500]
    # Bounded whatever the input's size: no reply (or log line) amplification.
    assert len(message) < 2000, f"{len(message)} characters: {message[:300]}"
    assert world.service.alive() and world.bus.owner_pid(BUS_NAME) == pid
    assert _snapshot(world) == before


@pytest.mark.root
def test_33rd_vif_is_limit_exceeded_and_rolls_back(world: World) -> None:
    """Fill table 7's 32 VIFs one AddVif at a time; the 33rd is LimitExceeded and
    changes nothing; removing them returns the table to what it was."""
    names = ["up0", "down0", "down1", *EXTRA[: MAX_VIFS - 3]]
    opts = {"table": v("u", 7)}

    async def scenario() -> None:
        caller = await Caller.connect(world.bus.address)
        try:
            for name in names:
                (index,) = await caller.ok("AddVif", "sa{sv}", [name, opts])
                assert index != PENDING_VIF_INDEX
            assert len((await caller.ok("ListVifs", "a{sv}", [opts]))[0]) == MAX_VIFS
            before = await asyncio.to_thread(_snapshot, world)
            reply = await caller.call("AddVif", "sa{sv}", [EXTRA[-1], opts])
            assert reply.error_name == LIMIT, reply.body
            assert "32" in reply.body[0] and EXTRA[-1] in reply.body[0], reply.body
            assert await asyncio.to_thread(_snapshot, world) == before
            for name in names:
                await caller.ok("RemoveVif", "sa{sv}", [name, opts])
            assert (await caller.ok("ListVifs", "a{sv}", [opts]))[0] == []
        finally:
            caller.close()

    asyncio.run(scenario())


@pytest.mark.root
def test_missing_interfaces_are_pending_not_errors(world: World) -> None:
    """The contract's answer to an unknown interface is 'pending', not an error: the
    route is kept and can be removed again. A missing input installs nothing; missing
    outputs leave an entry that forwards to the outputs present (here: none)."""
    before = kernel_entries(world.lab)

    async def scenario() -> None:
        caller = await Caller.connect(world.bus.address)
        try:
            await caller.ok("AddRoute", ROUTE, add(group="239.7.7.7", input="nosuch0"))
            await caller.ok("AddRoute", ROUTE, add(group="239.7.7.8", outputs=["gone1"]))
            (index,) = await caller.ok("AddVif", "sa{sv}", ["ghost0", {}])
            assert index == PENDING_VIF_INDEX
            states = {r[1]: (r[4]["state"].value, r[4]["missing"].value)
                      for r in await caller.list_routes()}  # fmt: skip
            assert states["239.7.7.7"] == ("pending", ["nosuch0"])
            assert states["239.7.7.8"] == ("pending", ["gone1"])
            after = await asyncio.to_thread(kernel_entries, world.lab)
            assert after - before == {(S4, "239.7.7.8", 0, "up0", frozenset())}
            assert before <= after
            await caller.ok("RemoveRoute", "ssa{sv}", [S4, "239.7.7.7", {}])
            await caller.ok("RemoveRoute", "ssa{sv}", [S4, "239.7.7.8", {}])
            await caller.ok("RemoveVif", "sa{sv}", ["ghost0", {}])
        finally:
            caller.close()

    asyncio.run(scenario())
    assert kernel_entries(world.lab) == before
