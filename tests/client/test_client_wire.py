"""The client on a real bus against a recording stand-in service (no root needed).

Checks what goes over the wire (signatures, a{sv} types, the
ALLOW_INTERACTIVE_AUTHORIZATION flag), that error replies come back as typed errors
and one-line messages with the right exit status, and what happens when the name has
no owner. The real service is exercised by test_cli_lab.py.
"""

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from mfc_dbus import cli, contract
from mfc_dbus.client import MfcClient, RouteSpec
from mfc_dbus.errors import AccessDenied, NoSuchInterface
from mfc_dbus.names import (
    BUS_NAME,
    DBUS_INVALID_ARGS,
    DBUS_PROPERTIES_INTERFACE,
    DBUS_UNKNOWN_METHOD,
    INTERFACE,
    OBJECT_PATH,
    PENDING_VIF_INDEX,
)

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")


CONTRACT = contract.load()
ROUTES = [
    ["192.0.2.1", "233.252.0.1", "up0", ["down0"], {
        "packets": Variant("t", 5), "state": Variant("s", "installed"),
        "family": Variant("s", "ipv4"), "table": Variant("u", 0),
    }],
    ["", "233.252.0.2", "up0", ["down9"], {
        "state": Variant("s", "pending"), "missing": Variant("as", ["down9"]),
    }],
]  # fmt: skip
VIFS = [
    ["up0", 0, {"family": Variant("s", "ipv4"), "in_packets": Variant("t", 7)}],
    ["down9", PENDING_VIF_INDEX, {"state": Variant("s", "pending")}],
]
GROUPS = [
    ["up0", "", "233.252.0.1", {
        "state": Variant("s", "joined"), "interfaces": Variant("as", ["up0"]),
        "memberships": Variant("u", 1), "family": Variant("s", "ipv4"),
    }],
    ["eth+", "192.0.2.1", "232.1.1.0/31", {
        "state": Variant("s", "waiting"), "table": Variant("u", 3),
        "origin": Variant("s", "/etc/mfc-dbus/mfc-dbus.conf:4"),
    }],
]  # fmt: skip
# The answer to each method with outputs, from its arguments (typed by the contract's
# out signature when it is sent).
REPLIES: dict[str, Callable[[list], list]] = {
    "AddRoutes": lambda args: [len(args[0])],
    "Flush": lambda args: [3],
    "AddOutputs": lambda args: [["down0", *args[2]]],
    "RemoveOutputs": lambda args: [[]],
    "ListRoutes": lambda args: [ROUTES],
    "AddVif": lambda args: [2],
    "ListVifs": lambda args: [VIFS],
    "ListGroups": lambda args: [GROUPS],
}


class StandIn:
    """org.mfc.Forwarding1 served from the contract alone: every call is checked against
    the XML's signature (InvalidArgs otherwise), recorded with its flags and answered
    (REPLIES); AddRoute also sends RouteAdded with the XML's arguments. `fail_with`
    makes every call fail with that error."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []
        self.flags: dict[str, int] = {}
        self.fail_with: tuple[str, str] | None = None
        self.bus: MessageBus | None = None

    def handle(self, message: Message) -> bool | None:
        if message.message_type is not MessageType.METHOD_CALL or message.path != OBJECT_PATH:
            return None
        if message.interface == DBUS_PROPERTIES_INTERFACE and message.member == "GetAll":
            version = Variant(CONTRACT.properties["Version"].signature, "9.9")
            return self._send(Message.new_method_return(message, "a{sv}", [{"Version": version}]))
        if message.interface != INTERFACE:
            return None
        spec = CONTRACT.methods.get(message.member or "")
        if spec is None:
            return self._send(Message.new_error(message, DBUS_UNKNOWN_METHOD, message.member))
        if message.signature != spec.in_signature:
            text = f"{spec.name} takes ({spec.in_signature}), not ({message.signature})"
            return self._send(Message.new_error(message, DBUS_INVALID_ARGS, text))
        self.calls.append((spec.name, list(message.body)))
        self.flags[spec.name] = int(message.flags)
        if self.fail_with is not None:
            return self._send(Message.new_error(message, *self.fail_with))
        body = REPLIES[spec.name](message.body) if spec.outputs else []
        self._send(Message.new_method_return(message, spec.out_signature, body))
        if spec.name == "AddRoute":
            self._route_added(*message.body)
        return True

    def _route_added(self, source, group, input_, outputs, options) -> None:
        signal = CONTRACT.signals["RouteAdded"]
        values = {
            "source": source or "*", "group": group, "input": input_, "outputs": outputs,
            "table": options["table"].value if "table" in options else 0,
            "family": "ipv6" if ":" in group else "ipv4",
        }  # fmt: skip
        self._send(
            Message(
                message_type=MessageType.SIGNAL, path=OBJECT_PATH, interface=INTERFACE,
                member=signal.name, signature=signal.signature,
                body=[values[name] for name in signal.arg_names],
            )
        )  # fmt: skip

    def _send(self, message: Message) -> bool:
        assert self.bus is not None
        self.bus.send(message)
        return True


class Service:
    """The stand-in served from its own thread and event loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.interface = StandIn()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def flags(self) -> dict[str, int]:
        return self.interface.flags

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        bus = self.interface.bus = await MessageBus(bus_address=self.address).connect()
        bus.add_message_handler(self.interface.handle)
        await bus.request_name(BUS_NAME)

    def stop(self) -> None:
        async def _stop() -> None:
            assert self.interface.bus is not None
            self.interface.bus.disconnect()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_the_stand_in_answers_every_method_of_the_contract() -> None:
    assert set(REPLIES) == {name for name, spec in CONTRACT.methods.items() if spec.outputs}


@pytest.fixture
def bus_address(tmp_path: Path) -> Iterator[str]:
    socket = tmp_path / "bus"
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address",
         f"--address=unix:path={socket}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        address = daemon.stdout.readline().strip()
        assert address, "dbus-daemon did not start"
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)


@pytest.fixture
def service(bus_address: str) -> Iterator[Service]:
    running = Service(bus_address)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def run_cli(capsys, address: str, *words: str) -> tuple[int, str, str]:
    status = cli.run(["--address", address, "--no-ask-password", *words])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_add_route_sends_the_contract_signature_and_typed_options(service, capsys):
    status, out, err = run_cli(
        capsys, service.address,
        "route", "add", "233.252.0.1", "from", "192.0.2.1", "iif", "up0",
        "oif", "down0", "down1", "table", "5", "temporary",
    )  # fmt: skip
    assert (status, out, err) == (0, "", "")
    name, args = service.interface.calls[-2]  # then ListRoutes, looking for pending routes
    assert name == "AddRoute"
    assert args[:4] == ["192.0.2.1", "233.252.0.1", "up0", ["down0", "down1"]]
    assert args[4] == {"table": Variant("u", 5), "persistent": Variant("b", False)}
    assert not service.flags["AddRoute"] & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION


def test_output_edits_send_the_contract_signature_and_print_the_outputs(service, capsys):
    status, out, err = run_cli(
        capsys, service.address,
        "route", "add-output", "225.1.2.3/24", "iif", "up0", "oif", "down1", "table", "5",
    )  # fmt: skip
    assert (status, out) == (0, "outputs: down0 down1\n")
    assert err == "mfc-dbus: warning: 225.1.2.3/24 taken as 225.1.2.0/24\n"
    options = {"table": Variant("u", 5), "input": Variant("s", "up0")}
    assert service.interface.calls[-1] == ("AddOutputs", ["", "225.1.2.0/24", ["down1"], options])
    assert not service.flags["AddOutputs"] & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION
    status, out, _ = run_cli(capsys, service.address, "route", "del-output", "ff3e::1", "oif", "a")
    assert (status, out) == (0, "outputs: (drop)\n")
    assert service.interface.calls[-1] == ("RemoveOutputs", ["", "ff3e::1", ["a"], {}])


def test_interactive_client_sets_the_flag_on_mutations_only(service):
    async def go() -> None:
        client = await MfcClient.connect(service.address, interactive=True)
        started = []
        client.before_mutation = lambda: started.append(True)
        async with client:
            await client.list_routes()
            await client.remove_route("", "233.252.0.1", table=0)
            await client.flush(family="ipv6")
        assert started == [True]  # the polkit agent hook runs once, before the first change

    asyncio.run(go())
    allow = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION
    assert service.flags["RemoveRoute"] & allow
    assert service.flags["Flush"] & allow
    assert not service.flags["ListRoutes"] & allow
    assert service.interface.calls[-1] == ("Flush", [{"family": Variant("s", "ipv6")}])


def test_pending_route_is_a_warning_not_an_error(service, capsys):
    status, out, err = run_cli(
        capsys, service.address, "route", "add", "233.252.0.2", "iif", "up0", "oif", "down9"
    )
    assert (status, out) == (0, "")
    assert err == (
        "mfc-dbus: warning: route * 233.252.0.2 is pending: down9 does not exist (yet); "
        "it is installed when the interface appears\n"
    )


def test_add_routes_batch_is_one_call(service, capsys, tmp_path):
    batch = tmp_path / "routes"
    batch.write_text(
        "route add 233.252.0.1 from 192.0.2.1 iif up0 oif down0\n"
        "mfc add --group ff3e::db8:1 --iif up0 --oifs down0 down1\n"
    )
    status, out, _ = run_cli(capsys, service.address, "-j", "batch", str(batch))
    assert status == 0 and json.loads(out) == {"added": 2}
    calls = [c for c in service.interface.calls if c[0] == "AddRoutes"]
    assert len(calls) == 1
    routes, options = calls[0][1]
    assert [list(route) for route in routes] == [
        ["192.0.2.1", "233.252.0.1", "up0", ["down0"], {}],
        ["", "ff3e::db8:1", "up0", ["down0", "down1"], {}],
    ]
    assert options == {}


def test_lists_json_and_tables(service, capsys):
    status, out, _ = run_cli(capsys, service.address, "-j", "r", "s")
    routes = json.loads(out)
    assert status == 0 and [r["source"] for r in routes] == ["192.0.2.1", "*"]
    assert routes[0]["packets"] == 5 and routes[1]["missing"] == ["down9"]
    status, out, _ = run_cli(capsys, service.address, "-s", "show")
    assert "PACKETS" in out.splitlines()[0] and "pending (missing down9)" in out
    status, out, _ = run_cli(capsys, service.address, "-j", "vif", "show")
    vifs = json.loads(out)
    assert [v["index"] for v in vifs] == [0, None] and vifs[0]["in_packets"] == 7
    status, out, _ = run_cli(capsys, service.address, "-j", "vif", "add", "down0", "-6")
    assert json.loads(out) == {"interface": "down0", "index": 2}
    assert service.interface.calls[-1] == ("AddVif", ["down0", {"family": Variant("s", "ipv6")}])
    status, out, _ = run_cli(capsys, service.address, "-j", "status")
    assert json.loads(out)["version"] == "9.9"


def test_group_join_leave_show(service, capsys):
    status, out, err = run_cli(
        capsys, service.address,
        "group", "join", "up0", "232.1.1.1", "source", "192.0.2.1", "table", "3", "lease",
    )  # fmt: skip
    assert (status, out, err) == (0, "", "")
    assert service.interface.calls[-1] == (
        "JoinGroup",
        ["up0", "192.0.2.1", "232.1.1.1", {"table": Variant("u", 3), "lease": Variant("b", True)}],
    )
    status, out, err = run_cli(capsys, service.address, "g", "j", "up0", "ff3e::1", "temporary")
    assert status == 0
    assert service.interface.calls[-1] == (
        "JoinGroup",
        ["up0", "", "ff3e::1", {"persistent": Variant("b", False)}],
    )
    status, out, err = run_cli(capsys, service.address, "group", "leave", "up0", "233.252.0.1")
    assert (status, out, err) == (0, "", "")
    assert service.interface.calls[-1] == ("LeaveGroup", ["up0", "", "233.252.0.1", {}])
    status, out, _ = run_cli(capsys, service.address, "-j", "group", "show")
    joins = json.loads(out)
    assert [(j["interface"], j["source"], j["state"]) for j in joins] == [
        ("up0", "*", "joined"),
        ("eth+", "192.0.2.1", "waiting"),
    ]
    assert joins[1]["origin"] == "/etc/mfc-dbus/mfc-dbus.conf:4" and joins[1]["table"] == 3
    status, out, _ = run_cli(capsys, service.address, "group", "show", "up0")
    lines = out.splitlines()
    assert lines[0].split() == ["INTERFACE", "SOURCE", "GROUP", "STATE", "MEMBERSHIPS"]
    assert lines[1].split() == ["up0", "*", "233.252.0.1", "joined", "1"] and len(lines) == 2
    status, out, err = run_cli(capsys, service.address, "group", "join", "up0", "192.0.2.9")
    assert status == 2 and "not a multicast address" in err


@pytest.mark.parametrize(
    "name, text, words, line, status",
    [
        (
            AccessDenied.dbus_name, "polkit said no", ("route", "flush"),
            "mfc-dbus: not authorized to manage routes (polkit action "
            "org.mfc.Forwarding1.manage-routes); ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules\n", 4,
        ),
        (
            AccessDenied.dbus_name, "polkit said no", ("vif", "del", "down0"),
            "mfc-dbus: not authorized to manage interfaces (polkit action "
            "org.mfc.Forwarding1.manage-interfaces); ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules\n", 4,
        ),
        (
            AccessDenied.dbus_name, "polkit said no", ("group", "join", "up0", "233.252.0.1"),
            "mfc-dbus: not authorized to manage group joins (polkit action "
            "org.mfc.Forwarding1.manage-groups); ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules\n", 4,
        ),
        (
            NoSuchInterface.dbus_name, "interface 'eth9' does not exist; known: up0, down0",
            ("route", "add", "233.252.0.1", "iif", "eth9", "oif", "down0"),
            "mfc-dbus: interface 'eth9' does not exist; known: up0, down0\n", 1,
        ),
        (
            "org.mfc.Forwarding1.Error.InvalidArgument", "group 'x' is not valid",
            ("reload",), "mfc-dbus: group 'x' is not valid\n", 2,
        ),
    ],
)  # fmt: skip
def test_error_replies_become_one_line_and_exit_status(service, capsys, name, text, words, line,
                                                       status):  # fmt: skip
    service.interface.fail_with = (name, text)
    got, out, err = run_cli(capsys, service.address, *words)
    assert (got, out, err) == (status, "", line)


def test_typed_errors_for_programs(service):
    service.interface.fail_with = (NoSuchInterface.dbus_name, "no 'eth9'")

    async def go() -> None:
        async with await MfcClient.connect(service.address) as client:
            with pytest.raises(NoSuchInterface, match="no 'eth9'"):
                await client.add_routes([RouteSpec("", "233.252.0.1", "eth9", ("down0",))])

    asyncio.run(go())


def test_service_absent(bus_address, capsys):
    status, out, err = run_cli(capsys, bus_address, "route", "show")
    assert status == 1 and out == ""
    assert err == (
        "mfc-dbus: the mfc-dbus service (org.mfc.Forwarding1) is not running and the bus "
        "cannot start it: is mfc-dbus installed? (systemctl status mfc-dbus)\n"
    )


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.05)
    return False


def test_monitor_prints_signals(service, tmp_path):
    out = tmp_path / "monitor.out"
    err = tmp_path / "monitor.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "mfc_dbus.cli", "--address", service.address,
             "-j", "monitor", "count", "2"],
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
        try:
            assert wait_for_text(err, "monitoring org.mfc.Forwarding1"), err.read_text()

            async def add() -> None:
                async with await MfcClient.connect(service.address) as client:
                    await client.add_route("", "233.252.0.1", "up0", ["down0"])
                    await client.add_route("2001:db8::1", "ff3e::db8:2", "up0", ["down1"], table=5)

            asyncio.run(add())
            assert monitor.wait(10) == 0
        finally:
            if monitor.poll() is None:
                monitor.kill()
                monitor.wait()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events == [
        {"event": "RouteAdded", "source": "*", "group": "233.252.0.1", "input": "up0",
         "outputs": ["down0"], "table": 0, "family": "ipv4"},
        {"event": "RouteAdded", "source": "2001:db8::1", "group": "ff3e::db8:2", "input": "up0",
         "outputs": ["down1"], "table": 5, "family": "ipv6"},
    ]  # fmt: skip
