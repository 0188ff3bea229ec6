"""`mfc-dbus group join|leave|show`: the router's group joins (IGMP/MLD), so that
snooping switches send the groups to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import cli_format as fmt
from .cli_grammar import EXIT_OK, Command
from .client import MfcClient
from .client_groups import GroupInfo
from .model import RouteKey, validate_interface_name, wildcard_stem

if TYPE_CHECKING:
    from .cli_commands import Context, Ready


def prepare_group(command: Command, key: RouteKey | None) -> dict[str, Any]:
    """Check a join's interface before connecting; the group and source (`key`, read
    from the command, None for show) in the service's spelling."""
    values = command.values
    if key is None:
        return {}
    interface = values["interface"]
    validate_interface_name(wildcard_stem(interface) or interface)
    source, group = key.texts
    return {
        "group": group,
        "source": "" if source == "*" else source,
        "persistent": False if values.get("temporary") else None,
        "lease": True if values.get("lease") else None,
    }


def group_json(join: GroupInfo) -> dict[str, Any]:
    return {
        "interface": join.interface,
        "source": join.source,
        "group": join.group,
        "state": join.state,
        "interfaces": list(join.interfaces),
        "memberships": join.memberships,
        "error": join.error,
        "family": join.family,
        "table": join.table,
        "persistent": join.persistent,
        "owner": join.owner,
        "origin": join.origin,
    }


def groups_table(joins: Sequence[GroupInfo]) -> str:
    show_table = any(join.table for join in joins)
    headers = ["INTERFACE", "SOURCE", "GROUP", "STATE"]
    if show_table:
        headers.append("TABLE")
    headers.append("MEMBERSHIPS")
    rows = []
    for join in sorted(joins, key=lambda j: (j.family, j.table, j.interface, j.group)):
        state = join.state
        if wildcard_stem(join.interface) is not None and join.interfaces:
            state += f" on {','.join(join.interfaces)}"
        if join.error:
            state += f" ({join.error})"
        state += fmt.kept_how(join.origin, join.owner, join.persistent)
        row: list[Any] = [join.interface, join.source, join.group, state]
        if show_table:
            row.append(join.table)
        row.append(join.memberships)
        rows.append(row)
    return fmt.table(headers, rows, right={len(headers) - 1})


async def group_join(ctx: Context, client: MfcClient, ready: Ready) -> int:
    await client.join_group(
        ready["interface"],
        ready["source"],
        ready["group"],
        table=ready["table"],
        persistent=ready["persistent"],
        lease=ready["lease"],
    )
    return EXIT_OK


async def group_leave(ctx: Context, client: MfcClient, ready: Ready) -> int:
    await client.leave_group(
        ready["interface"], ready["source"], ready["group"], table=ready["table"]
    )
    return EXIT_OK


async def group_show(ctx: Context, client: MfcClient, ready: Ready) -> int:
    joins = await client.list_groups(family=ready["family"], table=ready["table"])
    if "interface" in ready:
        name = ready["interface"]
        joins = [j for j in joins if j.interface == name or name in j.interfaces]
    if ctx.json:
        ctx.emit_json([group_json(join) for join in joins])
    else:
        ctx.print(groups_table(joins))
    return EXIT_OK
