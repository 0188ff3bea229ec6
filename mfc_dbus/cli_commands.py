"""What each mfc-dbus command does on the bus, with arguments already checked by
cli_prepare. A handler returns the exit status; errors are raised as MfcError."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import cli_config, cli_groups
from . import cli_format as fmt
from .cli_agent import PolkitAgent
from .cli_diagnose import Snapshot, diagnose
from .cli_grammar import EXIT_ERROR, EXIT_OK, PROG, Command
from .client import MfcClient
from .client_bus import BusUnavailable
from .client_routes import RouteInfo, RouteSpec
from .client_signals import Event
from .errors import MfcError
from .gcpause import gc_paused
from .names import BUS_NAME


@dataclass
class Context:
    """The global options, where output goes, and the polkit agent of one run."""

    opts: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    agent: PolkitAgent = field(default_factory=PolkitAgent)

    @property
    def json(self) -> bool:
        return bool(self.opts.json or self.opts.pretty)

    def print(self, text: str) -> None:
        if text:
            print(text, file=self.out, flush=True)

    def write(self, text: str) -> None:
        """Part of a line (a streamed document), sent at once."""
        if text:
            self.out.write(text)
            self.out.flush()

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


Ready = dict[str, Any]
Handler = Callable[[Context, MfcClient, Ready], Awaitable[int]]


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


# -- routes ----------------------------------------------------------------------------------
async def route_add(ctx: Context, client: MfcClient, ready: Ready) -> int:
    spec: RouteSpec = ready["spec"]
    await client.add_route(
        spec.source,
        spec.group,
        spec.input,
        spec.outputs,
        persistent=spec.persistent,
        lease=spec.lease,
        table=spec.table,
        replace=spec.replace,
    )
    if not spec.outputs:
        warn(
            f"route {spec.source or '*'} {spec.group} has no output: a blocking route, its "
            "packets are dropped (and counted)"
        )
    await warn_pending(client, [spec])
    return EXIT_OK


async def route_del(ctx: Context, client: MfcClient, ready: Ready) -> int:
    await client.remove_route(
        ready["source"] or "", ready["group"], table=ready["table"], input=ready.get("input")
    )
    return EXIT_OK


async def route_outputs(ctx: Context, client: MfcClient, ready: Ready, adding: bool) -> int:
    """`route add-output` / `route del-output`: one AddOutputs / RemoveOutputs call."""
    edit = client.add_outputs if adding else client.remove_outputs
    source = ready["source"] or ""
    args = (source, ready["group"], ready["outputs"])
    now = await edit(*args, table=ready["table"], input=ready["input"])
    if ctx.json:
        ctx.emit_json({"outputs": now})
    else:
        ctx.print(f"outputs: {fmt.outputs_text(now)}")
    return EXIT_OK


async def route_add_output(ctx: Context, client: MfcClient, ready: Ready) -> int:
    return await route_outputs(ctx, client, ready, adding=True)


async def route_del_output(ctx: Context, client: MfcClient, ready: Ready) -> int:
    return await route_outputs(ctx, client, ready, adding=False)


async def route_flush(ctx: Context, client: MfcClient, ready: Ready) -> int:
    learned = bool(ready["learned"])
    removed = await client.flush(family=ready["family"], table=ready["table"], learned=learned)
    if ctx.json:
        ctx.emit_json({"removed": removed})
    else:
        ctx.print(f"{_plural(removed, 'learned flow' if learned else 'route')} removed")
    return EXIT_OK


async def route_show(ctx: Context, client: MfcClient, ready: Ready) -> int:
    """One page: sorted and aligned as a whole. More: each page printed as it comes
    (fmt.StreamedRoutesTable, fmt.JsonArrayStream). The cyclic collector waits: a page
    is some 150,000 objects as dbus-fast reads it, none in a cycle, and collecting
    while they live cost as much as reading them (measured: bench/listing.py)."""
    with gc_paused():
        return await _route_show(ctx, client, ready)


async def _route_show(ctx: Context, client: MfcClient, ready: Ready) -> int:
    pages = client.route_pages(family=ready["family"], table=ready["table"])
    page = await anext(pages)
    more = bool(page) and page[-1].next is not None
    first = _shown(ready, page)
    if not more:
        if ctx.json:
            ctx.emit_json([fmt.route_json(r) for r in first])
        else:
            ctx.print(fmt.routes_table(first, stats=ctx.opts.stats))
        return EXIT_OK
    if ctx.json:
        stream = fmt.JsonArrayStream(ctx.opts.pretty)
        ctx.write(stream.items(fmt.route_json(r) for r in first))
        async for page in pages:
            ctx.write(stream.items(fmt.route_json(r) for r in _shown(ready, page)))
        ctx.print(stream.close())
    else:
        streamed = fmt.StreamedRoutesTable(stats=ctx.opts.stats)
        ctx.print(streamed.page(first))
        async for page in pages:
            ctx.print(streamed.page(_shown(ready, page)))
    return EXIT_OK


def _shown(ready: Ready, routes: list[RouteInfo]) -> list[RouteInfo]:
    """The routes `route show` was asked for (a group, a source) of one page."""
    if "group" in ready:
        routes = [r for r in routes if r.group == ready["group"]]
    if ready["source_given"]:
        routes = [r for r in routes if r.source == (ready["source"] or "*")]
    return routes


async def batch(ctx: Context, client: MfcClient, ready: Ready) -> int:
    count = await client.add_routes(ready["specs"])
    await warn_pending(client, ready["specs"])
    if ctx.json:
        ctx.emit_json({"added": count})
    else:
        ctx.print(f"{_plural(count, 'route')} added")
    return EXIT_OK


# -- VIFs ------------------------------------------------------------------------------------
async def vif_add(ctx: Context, client: MfcClient, ready: Ready) -> int:
    index = await client.add_vif(
        ready["interface"],
        family=ready["family"],
        table=ready["table"],
        ttl_threshold=ready["threshold"],
        persistent=ready["persistent"],
        mrdisc=ready["mrdisc"],
    )
    if ctx.json:
        ctx.emit_json({"interface": ready["interface"], "index": index})
    if index is None:
        warn(
            f"interface {ready['interface']} does not exist (yet); its VIF is pending "
            "until it appears"
        )
    return EXIT_OK


async def vif_del(ctx: Context, client: MfcClient, ready: Ready) -> int:
    await client.remove_vif(ready["interface"], family=ready["family"], table=ready["table"])
    return EXIT_OK


async def vif_show(ctx: Context, client: MfcClient, ready: Ready) -> int:
    vifs = await client.list_vifs(family=ready["family"], table=ready["table"])
    if "interface" in ready:
        vifs = [v for v in vifs if v.interface == ready["interface"]]
    if ctx.json:
        ctx.emit_json([fmt.vif_json(v) for v in vifs])
    else:
        ctx.print(fmt.vifs_table(vifs))
    return EXIT_OK


# -- the service -----------------------------------------------------------------------------
async def monitor(ctx: Context, client: MfcClient, ready: Ready) -> int:
    """Print every signal until Ctrl-C, SIGTERM or `count` events; exit 1 if the bus
    goes away first."""
    limit = ready["count"]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    seen = 0

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def show(event: Event) -> None:
        nonlocal seen
        if ctx.json:
            ctx.emit_json(fmt.event_json(event))
        else:
            ctx.print(fmt.event_text(event))
        seen += 1
        if limit and seen >= limit:
            finish()

    await client.watch(show)
    print(f"monitoring {BUS_NAME} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, finish)
    disconnected = asyncio.ensure_future(client.bus.wait_for_disconnect())
    await asyncio.wait([done, disconnected], return_when=asyncio.FIRST_COMPLETED)
    if not done.done():
        raise BusUnavailable("the system bus went away")
    disconnected.cancel()
    return EXIT_OK


async def run_diagnose(ctx: Context, client: MfcClient, ready: Ready) -> int:
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


async def status(ctx: Context, client: MfcClient, ready: Ready) -> int:
    props = await client.properties()
    if ctx.json:
        ctx.emit_json(fmt.status_json(props))
    else:
        ctx.print(fmt.status_text(props))
    return EXIT_OK


async def reload(ctx: Context, client: MfcClient, ready: Ready) -> int:
    await client.reload()
    return EXIT_OK


HANDLERS: dict[tuple[str, str], Handler] = {
    ("route", "add"): route_add,
    ("route", "del"): route_del,
    ("route", "flush"): route_flush,
    ("route", "show"): route_show,
    ("route", "add-output"): route_add_output,
    ("route", "del-output"): route_del_output,
    ("vif", "add"): vif_add,
    ("vif", "del"): vif_del,
    ("vif", "show"): vif_show,
    ("group", "join"): cli_groups.group_join,
    ("group", "leave"): cli_groups.group_leave,
    ("group", "show"): cli_groups.group_show,
    ("batch", ""): batch,
    ("monitor", ""): monitor,
    ("diagnose", ""): run_diagnose,
    ("status", ""): status,
    ("reload", ""): reload,
    ("config", "export"): cli_config.export,
    ("config", "import"): cli_config.import_file,
}
# Commands that never need the service.
LOCAL_HANDLERS: dict[tuple[str, str], Callable[[Context, Ready], int]] = {
    ("config", "check"): cli_config.check_file,
}


async def execute(ctx: Context, command: Command, ready: Ready) -> int:
    """Connect, run the command's handler, and close the connection whatever happens."""
    local = LOCAL_HANDLERS.get((command.obj, command.verb))
    if local is not None:
        return local(ctx, ready)
    handler = HANDLERS[(command.obj, command.verb)]
    client = await ctx.connect()
    try:
        return await handler(ctx, client, ready)
    finally:
        await client.close()
