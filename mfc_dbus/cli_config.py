"""`mfc-dbus config check|export|import`: configuration files from the command line.

check reads a file without the service; export prints what the service holds in
mfc-dbus.conf(5) syntax; import applies a file's routes, VIF settings and group joins
as runtime changes (routes in one all-or-nothing AddRoutes, VIF settings and joins
after them; if one of those fails, the joins and routes just added are removed again).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .cli_grammar import PROG
from .client import MfcClient
from .client_groups import GroupInfo
from .client_routes import RouteInfo, RouteSpec
from .client_vifs import VifInfo
from .config import ConfigInterface, ConfigRoute, Configuration, ConfigurationError, Problem
from .config.check import ANY_SOURCE, ConfigJoin
from .config.render import render
from .errors import MfcError
from .model import make_route_key, wildcard_stem

if TYPE_CHECKING:
    from .cli_commands import Context, Ready

EXPORT_HEADER = "# mfc-dbus.conf(5): exported from the running service\n"


def check_file(ctx: Context, ready: Ready) -> int:
    """The file is read by load_file in cli_prepare, so reaching here means it is good."""
    configuration: Configuration = ready["configuration"]
    for warning in configuration.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr, flush=True)
    summary = {
        "file": ready["file"],
        "routes": len(configuration.routes),
        "joins": len(configuration.joins),
        "interfaces": len(configuration.interfaces),
    }
    if ctx.json:
        ctx.emit_json(summary)
    else:
        ctx.print(
            f"{ready['file']}: good: {summary['routes']} routes, {summary['joins']} group "
            f"joins, {summary['interfaces']} interface settings"
        )
    return 0


async def export(ctx: Context, client: MfcClient, ready: Ready) -> int:
    # Runtime changes an administrator made: not learned flows, not routes leased to a
    # client, not the routes of the configuration files (they are in those files).
    routes = [
        r
        for r in await client.list_routes()
        if r.state != "learned" and not r.owner and not r.origin
    ]
    vifs = [v for v in await client.list_vifs() if v.explicit]
    joins = [_join(j) for j in await client.list_groups() if not j.owner and not j.origin]
    ctx.out.write(EXPORT_HEADER + render(_interfaces(vifs), joins, [_route(r) for r in routes]))
    ctx.out.flush()
    return 0


async def import_file(ctx: Context, client: MfcClient, ready: Ready) -> int:
    configuration: Configuration = ready["configuration"]
    specs = [_spec(route) for route in configuration.routes]
    added = await client.add_routes(specs) if specs else 0
    joined: list[ConfigJoin] = []
    try:
        await _apply_interfaces(client, configuration)
        for join in configuration.joins:
            await client.join_group(*_join_args(join), table=join.table or None)
            joined.append(join)
    except MfcError:
        for join in joined:
            await client.leave_group(*_join_args(join), table=join.table or None)
        for spec in specs:
            await client.remove_route(spec.source, spec.group, table=spec.table)
        raise
    vifs = sum(1 for interface in configuration.interfaces if interface.enabled)
    if ctx.json:
        ctx.emit_json({"routes": added, "interfaces": vifs, "joins": len(joined)})
    else:
        ctx.print(
            f"{ready['file']}: {added} routes, {vifs} interface settings and "
            f"{len(joined)} group joins applied"
        )
    return 0


async def _apply_interfaces(client: MfcClient, configuration: Configuration) -> None:
    for interface in configuration.interfaces:
        if interface.enabled:
            for family in _families(interface, configuration.routes):
                await client.add_vif(
                    interface.interface,
                    family=family,
                    table=interface.table or None,
                    ttl_threshold=interface.ttl_threshold,
                    mrdisc=interface.mrdisc or None,
                )


def _join_args(join: ConfigJoin) -> tuple[str, str, str]:
    return join.interface, "" if join.source == ANY_SOURCE else join.source, join.group


def importable(configuration: Configuration) -> Configuration:
    """What import can apply as runtime changes; the rest is named with its place."""
    problems = []
    for route in configuration.routes:
        if wildcard_stem(route.input) is not None and route.origin is not None:
            problems.append(
                Problem(
                    route.origin,
                    f"interface wildcard {route.input!r} works only in the service's "
                    "configuration files; name one interface to import",
                )
            )
    if problems:
        raise ConfigurationError(problems)
    return configuration


def _spec(route: ConfigRoute) -> RouteSpec:
    source = "" if route.source == ANY_SOURCE else route.source
    return RouteSpec(source, route.group, route.input, route.outputs, table=route.table or None)


def _families(interface: ConfigInterface, routes: list[ConfigRoute]) -> list[str]:
    """The families of the routes using the interface in its table; IPv4 if none does."""
    families = {
        str(route.key.family)
        for route in routes
        if route.table == interface.table
        and (route.input == interface.interface or interface.interface in route.outputs)
    }
    return sorted(families) or ["ipv4"]


def _route(info: RouteInfo) -> ConfigRoute:
    key = make_route_key(info.source, info.group, info.table)
    return ConfigRoute(info.input, key, info.outputs)


def _join(info: GroupInfo) -> ConfigJoin:
    return ConfigJoin(info.interface, make_route_key(info.source, info.group, info.table))


def _interfaces(vifs: list[VifInfo]) -> list[ConfigInterface]:
    """One phyint line per interface and table (smcroute's phyint covers both families)."""
    settings: dict[tuple[str, int], ConfigInterface] = {}
    for vif in vifs:
        settings.setdefault(
            (vif.interface, vif.table),
            ConfigInterface(vif.interface, True, vif.mrdisc, vif.ttl_threshold, vif.table),
        )
    return list(settings.values())
