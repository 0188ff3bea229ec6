"""mfc-dbus: the command-line client of the org.mfc.Forwarding1 service.

It speaks D-Bus only. Commands follow iproute2: `mfc-dbus route add 232.1.1.1 from
192.0.2.1 iif eth0 oif eth1 eth2`; any prefix of a command word works and, as in `ip`,
a prefix that fits several words means the first one in the order of the usage text
(`mfc-dbus r s` is `route show`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import cli_format as fmt
from .cli_diagnose import Snapshot, diagnose
from .client import (
    DEFAULT_TIMEOUT,
    ActivationFailed,
    BusUnavailable,
    Event,
    MfcClient,
    RouteSpec,
    ServiceUnavailable,
)
from .errors import AccessDenied, InteractiveAuthorizationRequired, InvalidArgument, MfcError
from .model import (
    MAX_TABLE_ID,
    Family,
    make_route_key,
    source_text,
    validate_interface_name,
)
from .names import (
    ACTION_MANAGE_INTERFACES,
    ACTION_MANAGE_ROUTES,
    BUS_NAME,
    EXAMPLE_RULES_INSTALLED,
)

PROG = "mfc-dbus"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 4

USAGE = f"""\
usage: {PROG} [OPTIONS] OBJECT COMMAND [ARGUMENTS]

  route add GROUP [from SOURCE] iif IF oif IF [IF ...] [table N] [lease] [temporary]
  route del GROUP [from SOURCE] [table N]
  route show [GROUP] [from SOURCE] [table N] [family ipv4|ipv6]
  route flush [table N] [family ipv4|ipv6]
  vif add IF [family ipv4|ipv6] [table N] [threshold TTL] [temporary]
  vif del IF [family ipv4|ipv6] [table N]
  vif show [IF] [family ipv4|ipv6] [table N]
  mfc add [--source S] --group G --iif IF --oifs IF [IF ...] [--table N]
  mfc del [--source S] --group G [--table N]
  mfc show
  show                      the same as `route show`
  monitor [count N]         print the service's signals as they arrive
  reload                    re-read the configuration (state file)
  batch FILE|-              add the routes of FILE (one `route add ...` per line),
                            all or nothing
  diagnose GROUP [SOURCE] [table N] [interval SECONDS]
                            explain why GROUP does not forward
  status                    version, route and VIF counts, families
  help

SOURCE '*' (or none) means any source; SOURCE and GROUP may be prefixes.

options:
  -j, --json            machine-readable output (keys: see mfc-dbus(1))
  -p, --pretty          indent JSON output
  -s, --stats           show packet and byte counters of routes
  -4, -6                only IPv4 / only IPv6 (show, flush, VIFs)
  --no-ask-password     never ask for a password (no polkit agent)
  --timeout SECONDS     give up on a call after SECONDS (default {DEFAULT_TIMEOUT:g})
  --address ADDRESS     bus address (default: $DBUS_SYSTEM_BUS_ADDRESS or the system bus)
  -V, --version         print the client's version
  -h, --help            this help

exit status: 0 ok, 1 error, 2 usage or invalid argument, 4 not authorized
"""

# Order matters: a prefix that fits several words means the first (as in `ip`).
OBJECTS = (
    "route",
    "vif",
    "mfc",
    "show",
    "monitor",
    "reload",
    "batch",
    "diagnose",
    "status",
    "help",
)
VERBS = {
    "route": ("add", "del", "show", "flush", "list", "delete"),
    "vif": ("add", "del", "show", "list", "delete"),
    "mfc": ("add", "del", "show", "delete", "list"),
}
VERB_ALIASES = {"delete": "del", "list": "show", "ls": "show"}
GLOBAL_FLAGS = {
    "-j": "json",
    "--json": "json",
    "-p": "pretty",
    "--pretty": "pretty",
    "-s": "stats",
    "--stats": "stats",
    "-4": "ipv4",
    "-6": "ipv6",
    "--no-ask-password": "no_ask_password",
}


class UsageError(Exception):
    """Bad command line: exit status 2."""


def resolve(word: str, choices: Sequence[str], what: str) -> str:
    """The first of `choices` that `word` is a prefix of (ip's rule), or UsageError."""
    if word in VERB_ALIASES and VERB_ALIASES[word] in choices:
        return VERB_ALIASES[word]
    if word:
        for choice in choices:
            if choice.startswith(word):
                return VERB_ALIASES.get(choice, choice)
    valid = ", ".join(c for c in choices if c not in VERB_ALIASES)
    raise UsageError(f"unknown {what} {word!r}; use one of: {valid}")


# -- keyword arguments (ip style) ---------------------------------------------------------
@dataclass
class Grammar:
    """Keywords a command accepts: keyword -> (field, kind); kinds: value, list, flag."""

    keywords: dict[str, tuple[str, str]]
    positionals: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    usage: str = ""


ROUTE_KEYWORDS = {
    "to": ("group", "value"),
    "group": ("group", "value"),
    "from": ("source", "value"),
    "source": ("source", "value"),
    "table": ("table", "value"),
}
GRAMMARS = {
    ("route", "add"): Grammar(
        {
            **ROUTE_KEYWORDS,
            "iif": ("input", "value"),
            "input": ("input", "value"),
            "oif": ("outputs", "list"),
            "oifs": ("outputs", "list"),
            "outputs": ("outputs", "list"),
            "lease": ("lease", "flag"),
            "temporary": ("temporary", "flag"),
        },
        positionals=("group", "source"),
        required=("group", "input", "outputs"),
        usage="route add GROUP [from SOURCE] iif IF oif IF [IF ...] [table N] [lease] "
        "[temporary]",
    ),
    ("route", "del"): Grammar(
        ROUTE_KEYWORDS,
        positionals=("group", "source"),
        required=("group",),
        usage="route del GROUP [from SOURCE] [table N]",
    ),
    ("route", "show"): Grammar(
        {**ROUTE_KEYWORDS, "family": ("family", "value")},
        positionals=("group", "source"),
        usage="route show [GROUP] [from SOURCE] [table N] [family F]",
    ),
    ("route", "flush"): Grammar(
        {"table": ("table", "value"), "family": ("family", "value")},
        usage="route flush [table N] [family F]",
    ),
    ("vif", "add"): Grammar(
        {
            "dev": ("interface", "value"),
            "family": ("family", "value"),
            "table": ("table", "value"),
            "threshold": ("threshold", "value"),
            "ttl-threshold": ("threshold", "value"),
            "temporary": ("temporary", "flag"),
        },
        positionals=("interface",),
        required=("interface",),
        usage="vif add IF [family F] [table N] [threshold TTL] [temporary]",
    ),
    ("vif", "del"): Grammar(
        {
            "dev": ("interface", "value"),
            "family": ("family", "value"),
            "table": ("table", "value"),
        },
        positionals=("interface",),
        required=("interface",),
        usage="vif del IF [family F] [table N]",
    ),
    ("vif", "show"): Grammar(
        {
            "dev": ("interface", "value"),
            "family": ("family", "value"),
            "table": ("table", "value"),
        },
        positionals=("interface",),
        usage="vif show [IF] [family F] [table N]",
    ),
    ("monitor", ""): Grammar({"count": ("count", "value")}, usage="monitor [count N]"),
    ("diagnose", ""): Grammar(
        {
            **ROUTE_KEYWORDS,
            "interval": ("interval", "value"),
        },
        positionals=("group", "source"),
        required=("group",),
        usage="diagnose GROUP [SOURCE] [table N] [interval SECONDS]",
    ),
    ("batch", ""): Grammar({}, positionals=("file",), required=("file",), usage="batch FILE|-"),
    ("reload", ""): Grammar({}, usage="reload"),
    ("status", ""): Grammar({}, usage="status"),
}


def parse_keywords(grammar: Grammar, tokens: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    positionals = list(grammar.positionals)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        spec = grammar.keywords.get(token)
        if spec is None:
            while positionals and positionals[0] in values:
                positionals.pop(0)
            if not positionals:
                raise UsageError(f"unexpected argument {token!r}; usage: {grammar.usage}")
            values[positionals.pop(0)] = token
            continue
        dest, kind = spec
        if dest in values:
            raise UsageError(f"{token!r} given twice; usage: {grammar.usage}")
        if kind == "flag":
            values[dest] = True
        elif kind == "value":
            if i >= len(tokens):
                raise UsageError(f"{token!r} needs a value; usage: {grammar.usage}")
            values[dest] = tokens[i]
            i += 1
        else:  # list: everything up to the next keyword
            items = []
            while i < len(tokens) and tokens[i] not in grammar.keywords:
                items.append(tokens[i])
                i += 1
            if not items:
                raise UsageError(f"{token!r} needs at least one interface; usage: {grammar.usage}")
            values[dest] = items
    missing = [name for name in grammar.required if name not in values]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}; usage: {grammar.usage}")
    return values


def parse_uint(text: str | None, what: str, maximum: int = MAX_TABLE_ID) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        raise InvalidArgument(f"{what} {text!r} is not valid; use a number from 0 to {maximum}")
    return value


def parse_seconds(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise InvalidArgument(f"interval {text!r} is not valid; use 0 to 3600 seconds")
    return value


# -- the legacy `mfc add|del` form ------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_mfc(verb: str, tokens: Sequence[str]) -> dict[str, Any]:
    parser = _Parser(prog=f"{PROG} mfc {verb}", add_help=False, allow_abbrev=True)
    parser.add_argument("--source", default="")
    parser.add_argument("--group", required=True)
    parser.add_argument("--table")
    if verb == "add":
        parser.add_argument("--iif", required=True)
        parser.add_argument("--oifs", nargs="+", required=True)
        parser.add_argument("--lease", action="store_true")
        parser.add_argument("--temporary", action="store_true")
    ns = parser.parse_args(list(tokens))
    values = {k: v for k, v in vars(ns).items() if v not in (None, False)}
    if "iif" in values:
        values["input"] = values.pop("iif")
        values["outputs"] = values.pop("oifs")
    return values


# -- values -> requests ----------------------------------------------------------------------
def route_spec(values: dict[str, Any]) -> RouteSpec:
    """Validate early (friendly messages); the service stays the authority."""
    source = values.get("source", "")
    table = parse_uint(values.get("table"), "table")
    make_route_key(source, values["group"], table or 0)
    validate_interface_name(values["input"])
    for name in values["outputs"]:
        validate_interface_name(name)
    return RouteSpec(
        source="" if source in ("", "*") else source,
        group=values["group"],
        input=values["input"],
        outputs=tuple(values["outputs"]),
        persistent=False if values.get("temporary") else None,
        lease=True if values.get("lease") else None,
        table=table,
    )


def family_option(values: dict[str, Any], opts: argparse.Namespace) -> str | None:
    if "family" in values:
        return str(Family.parse(values["family"]))
    if opts.ipv4 and not opts.ipv6:
        return Family.IPV4.value
    if opts.ipv6 and not opts.ipv4:
        return Family.IPV6.value
    return None


def parse_batch(lines: Sequence[str], name: str) -> list[RouteSpec]:
    specs = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{name}:{number}"
        try:
            tokens = shlex.split(text, comments=True)
            obj = resolve(tokens[0], ("route", "mfc", "add"), "command")
            if obj != "add":
                tokens = tokens[1:]
                if not tokens or resolve(tokens[0], ("add",), "command") != "add":
                    raise UsageError("only `route add ...` and `mfc add ...` lines are allowed")
            else:
                obj = "route"
            rest = tokens[1:]
            if obj == "mfc":
                values = parse_mfc("add", rest)
            else:
                values = parse_keywords(GRAMMARS[("route", "add")], rest)
            specs.append(route_spec(values))
        except ValueError as exc:  # shlex
            raise UsageError(f"{where}: {exc}") from None
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}") from None
    return specs


# -- polkit agent (as systemctl does) ---------------------------------------------------------
def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid it names one
    process for polkit, even after the pid is reused."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def agent_argv(pkttyagent: str, notify_fd: int, pid: int) -> list[str]:
    """pkttyagent registered for this client's own process. polkitd uses an agent
    registered for a session only for callers inside a logind session; one
    registered for the calling process also works under su, runuser, ssh without
    pam_systemd, containers and cron."""
    return [pkttyagent, "--notify-fd", str(notify_fd),
            "--process", f"{pid},{process_start_time(pid)}"]  # fmt: skip


@dataclass
class PolkitAgent:
    """pkttyagent for this client's process, started before the first mutating call."""

    process: subprocess.Popen | None = None
    wanted: bool = False

    def start(self) -> None:
        if not self.wanted or self.process is not None or os.geteuid() == 0:
            return
        path = shutil.which("pkttyagent")
        if path is None:
            return
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                agent_argv(path, write_fd, os.getpid()), pass_fds=(write_fd,)
            )
        except OSError:
            os.close(read_fd)
            return
        finally:
            os.close(write_fd)
        # The agent closes the notify fd once registered (or dies); do not hang on it.
        select.select([read_fd], [], [], 5.0)
        os.close(read_fd)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# -- commands ---------------------------------------------------------------------------------
@dataclass
class Context:
    opts: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    agent: PolkitAgent = field(default_factory=PolkitAgent)

    @property
    def json(self) -> bool:
        return bool(self.opts.json or self.opts.pretty)

    def print(self, text: str) -> None:
        if text:
            print(text, file=self.out, flush=True)

    def emit_json(self, value: Any) -> None:
        self.print(fmt.dumps(value, self.opts.pretty))

    async def connect(self) -> MfcClient:
        interactive = not self.opts.no_ask_password and sys.stdin.isatty()
        self.agent.wanted = interactive
        client = await MfcClient.connect(
            self.opts.address, interactive=interactive, timeout=self.opts.timeout
        )
        client.before_mutation = self.agent.start
        return client


@dataclass(frozen=True)
class Command:
    obj: str
    verb: str
    values: dict[str, Any]


def parse_command(words: Sequence[str]) -> Command:
    if not words:
        raise UsageError(f"no command given; try `{PROG} help`")
    obj = resolve(words[0], OBJECTS, "object")
    rest = list(words[1:])
    if obj == "show":
        obj, rest = "route", ["show", *rest]
    if obj in VERBS:
        verb = resolve(rest[0], VERBS[obj], f"{obj} command") if rest else "show"
        rest = rest[1:]
        if obj == "mfc":
            if verb == "show":
                return Command("route", "show", parse_keywords(GRAMMARS[("route", "show")], rest))
            return Command("route", verb, parse_mfc(verb, rest))
        return Command(obj, verb, parse_keywords(GRAMMARS[(obj, verb)], rest))
    if obj == "help":
        return Command("help", "", {})
    return Command(obj, "", parse_keywords(GRAMMARS[(obj, "")], rest))


def prepare(command: Command, opts: argparse.Namespace) -> dict[str, Any]:
    """Validate and convert every argument before connecting: friendly early errors."""
    values = command.values
    ready: dict[str, Any] = {
        "table": parse_uint(values.get("table"), "table"),
        "family": family_option(values, opts),
    }
    if "interface" in values:
        ready["interface"] = validate_interface_name(values["interface"])
    if command.obj == "route" and command.verb == "add":
        ready["spec"] = route_spec(values)
    elif command.obj in ("route", "diagnose") and "group" in values:
        key = make_route_key(values.get("source", ""), values["group"], ready["table"] or 0)
        source, ready["group"] = key.texts
        ready["source"] = None if source == "*" else source
        ready["group_family"] = str(key.family)
    elif command.obj == "route" and "source" in values:
        source = source_text(values["source"])
        ready["source"] = None if source == "*" else source
    ready["source_given"] = "source" in values
    if command.obj == "vif" and command.verb == "add":
        ready["threshold"] = parse_uint(values.get("threshold"), "threshold", 255)
        ready["persistent"] = False if values.get("temporary") else None
    if command.obj == "monitor":
        ready["count"] = parse_uint(values.get("count"), "count")
    if command.obj == "diagnose":
        ready["interval"] = parse_seconds(values.get("interval"), 2.0)
    if command.obj == "batch":
        ready["specs"] = read_batch(values["file"])
    return ready


def read_batch(name: str) -> list[RouteSpec]:
    try:
        if name == "-":
            lines = sys.stdin.read().splitlines()
            name = "<stdin>"
        else:
            with open(name, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
    except OSError as exc:
        raise MfcError(f"cannot read {name}: {exc.strerror}") from None
    specs = parse_batch(lines, name)
    if not specs:
        raise InvalidArgument(f"{name}: no routes to add")
    return specs


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


async def warn_pending(client: MfcClient, specs: Sequence[RouteSpec]) -> None:
    """Say which of the routes just added wait for a missing interface (a typo?)."""
    wanted = {(s.source or "*", s.group, s.table or 0) for s in specs}
    try:
        routes = await client.list_routes()
    except MfcError:
        return  # the change itself succeeded; the hint is best effort
    for route in routes:
        if route.state == "pending" and (route.source, route.group, route.table) in wanted:
            missing = ", ".join(route.missing) or "an interface"
            warn(
                f"route {route.source} {route.group} is pending: {missing} does not exist "
                "(yet); it is installed when the interface appears"
            )


async def cmd_route(ctx: Context, client: MfcClient, verb: str, ready: dict[str, Any]) -> int:
    if verb == "add":
        spec: RouteSpec = ready["spec"]
        await client.add_route(
            spec.source,
            spec.group,
            spec.input,
            spec.outputs,
            persistent=spec.persistent,
            lease=spec.lease,
            table=spec.table,
        )
        await warn_pending(client, [spec])
    elif verb == "del":
        await client.remove_route(ready["source"] or "", ready["group"], table=ready["table"])
    elif verb == "flush":
        removed = await client.flush(family=ready["family"], table=ready["table"])
        if ctx.json:
            ctx.emit_json({"removed": removed})
        else:
            ctx.print(f"{_plural(removed, 'route')} removed")
    else:
        routes = await client.list_routes(family=ready["family"], table=ready["table"])
        if "group" in ready:
            routes = [r for r in routes if r.group == ready["group"]]
        if ready["source_given"]:
            routes = [r for r in routes if r.source == (ready["source"] or "*")]
        if ctx.json:
            ctx.emit_json([fmt.route_json(r) for r in routes])
        else:
            ctx.print(fmt.routes_table(routes, stats=ctx.opts.stats))
    return EXIT_OK


async def cmd_vif(ctx: Context, client: MfcClient, verb: str, ready: dict[str, Any]) -> int:
    family, table = ready["family"], ready["table"]
    if verb == "add":
        index = await client.add_vif(
            ready["interface"],
            family=family,
            table=table,
            ttl_threshold=ready["threshold"],
            persistent=ready["persistent"],
        )
        if ctx.json:
            ctx.emit_json({"interface": ready["interface"], "index": index})
        if index is None:
            warn(
                f"interface {ready['interface']} does not exist (yet); its VIF is pending "
                "until it appears"
            )
    elif verb == "del":
        await client.remove_vif(ready["interface"], family=family, table=table)
    else:
        vifs = await client.list_vifs(family=family, table=table)
        if "interface" in ready:
            vifs = [v for v in vifs if v.interface == ready["interface"]]
        if ctx.json:
            ctx.emit_json([fmt.vif_json(v) for v in vifs])
        else:
            ctx.print(fmt.vifs_table(vifs))
    return EXIT_OK


async def cmd_batch(ctx: Context, client: MfcClient, ready: dict[str, Any]) -> int:
    count = await client.add_routes(ready["specs"])
    await warn_pending(client, ready["specs"])
    if ctx.json:
        ctx.emit_json({"added": count})
    else:
        ctx.print(f"{_plural(count, 'route')} added")
    return EXIT_OK


async def cmd_monitor(ctx: Context, client: MfcClient, ready: dict[str, Any]) -> int:
    limit = ready["count"]
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    seen = 0

    def show(event: Event) -> None:
        nonlocal seen
        if ctx.json:
            ctx.emit_json(fmt.event_json(event))
        else:
            ctx.print(fmt.event_text(event))
        seen += 1
        if limit and seen >= limit and not done.done():
            done.set_result(None)

    await client.watch(show)
    print(f"monitoring {BUS_NAME} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: done.done() or done.set_result(None))
    disconnected = asyncio.ensure_future(client.bus.wait_for_disconnect())
    await asyncio.wait([done, disconnected], return_when=asyncio.FIRST_COMPLETED)
    if not done.done():
        raise BusUnavailable("the system bus went away")
    disconnected.cancel()
    return EXIT_OK


async def cmd_diagnose(ctx: Context, client: MfcClient, ready: dict[str, Any]) -> int:
    family, table, interval = ready["group_family"], ready["table"], ready["interval"]

    async def snapshot() -> Snapshot:
        routes = await client.list_routes(family=family, table=table)
        vifs = await client.list_vifs(family=family, table=table)
        return Snapshot(routes, vifs)

    before = await snapshot() if interval else Snapshot([], [])
    if interval:
        await asyncio.sleep(interval)
    after = await snapshot()
    result = diagnose(ready["group"], ready["source"], before, after, interval)
    if ctx.json:
        ctx.emit_json(result.json())
    else:
        ctx.print(result.text())
    return EXIT_OK if result.healthy else EXIT_ERROR


async def cmd_status(ctx: Context, client: MfcClient) -> int:
    props = await client.properties()
    if ctx.json:
        ctx.emit_json(fmt.status_json(props))
    else:
        ctx.print(fmt.status_text(props))
    return EXIT_OK


async def execute(ctx: Context, command: Command, ready: dict[str, Any]) -> int:
    client = await ctx.connect()
    try:
        if command.obj == "route":
            return await cmd_route(ctx, client, command.verb, ready)
        if command.obj == "vif":
            return await cmd_vif(ctx, client, command.verb, ready)
        if command.obj == "batch":
            return await cmd_batch(ctx, client, ready)
        if command.obj == "monitor":
            return await cmd_monitor(ctx, client, ready)
        if command.obj == "diagnose":
            return await cmd_diagnose(ctx, client, ready)
        if command.obj == "status":
            return await cmd_status(ctx, client)
        await client.reload()
        return EXIT_OK
    finally:
        await client.close()


# -- errors -> one line and an exit status ------------------------------------------------------
ACTION_WORDS = {
    ACTION_MANAGE_ROUTES: "manage routes",
    ACTION_MANAGE_INTERFACES: "manage interfaces",
}


def describe_error(error: MfcError) -> tuple[str, int]:
    """The one line printed for an error, and the exit status."""
    action = getattr(error, "action", None) or ACTION_MANAGE_ROUTES
    what = ACTION_WORDS.get(action, "do this")
    if isinstance(error, AccessDenied):
        return (
            f"not authorized to {what} (polkit action {action}); ask an administrator, "
            f"or see {EXAMPLE_RULES_INSTALLED}",
            EXIT_DENIED,
        )
    if isinstance(error, InteractiveAuthorizationRequired):
        return (
            f"authentication is required to {what} (polkit action {action}); run {PROG} on "
            "a terminal without --no-ask-password, or ask an administrator",
            EXIT_DENIED,
        )
    if isinstance(error, ServiceUnavailable):
        return (
            f"the mfc-dbus service ({BUS_NAME}) is not running and the bus cannot start it: "
            "is mfc-dbus installed? (systemctl status mfc-dbus)",
            EXIT_ERROR,
        )
    if isinstance(error, ActivationFailed):
        return (
            f"the bus could not start the mfc-dbus service: {error.message}; "
            "see `journalctl -u mfc-dbus`",
            EXIT_ERROR,
        )
    if isinstance(error, InvalidArgument):
        return error.message, EXIT_USAGE
    return error.message or type(error).__name__, EXIT_ERROR


def fail(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-V", "--version", action="store_true")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--address", default=None)
    parser.add_argument("words", nargs=argparse.REMAINDER)
    return parser


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    """Global flags may appear anywhere (`mfc-dbus route show -j`), the others first."""
    flags = {name: False for name in GLOBAL_FLAGS.values()}
    rest: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            rest += argv[i + 1 :]
            break
        if token in GLOBAL_FLAGS:
            flags[GLOBAL_FLAGS[token]] = True
        else:
            rest.append(token)
    opts = build_parser().parse_args(rest)
    for name, value in flags.items():
        setattr(opts, name, value)
    if opts.timeout is not None and opts.timeout <= 0:
        opts.timeout = None
    return opts


def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return dist_version("mfc-dbus")
    except Exception:
        return "unknown"


def run(argv: Sequence[str], out: TextIO | None = None) -> int:
    ctx: Context | None = None
    try:
        opts = parse_options(argv)
        if opts.help:
            print(USAGE, end="")
            return EXIT_OK
        if opts.version:
            print(f"{PROG} {version()}")
            return EXIT_OK
        command = parse_command(opts.words)
        if command.obj == "help":
            print(USAGE, end="")
            return EXIT_OK
        ready = prepare(command, opts)
        ctx = Context(opts, out or sys.stdout)
        return asyncio.run(execute(ctx, command, ready))
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except MfcError as exc:
        message, status = describe_error(exc)
        fail(message)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # never a traceback for the user
        if os.environ.get("MFC_DBUS_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set MFC_DBUS_DEBUG=1 for details)")
        return EXIT_ERROR
    finally:
        if ctx is not None:
            ctx.agent.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mfc-dbus` command."""
    status = run(sys.argv[1:] if argv is None else argv)
    sys.exit(status)


if __name__ == "__main__":
    main()
