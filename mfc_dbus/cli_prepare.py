"""From a parsed command to checked arguments, before any bus traffic.

Every value is validated and converted here so that a typo gets a friendly error
(exit status 2) without connecting; the service stays the authority and checks again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_config import importable
from .cli_grammar import GRAMMARS, PROG, Command, UsageError, parse_keywords, parse_mfc, resolve
from .cli_groups import prepare_group
from .client_routes import RouteSpec
from .config import load_file
from .errors import InvalidArgument, MfcError
from .model import (
    MAX_TABLE_ID,
    Family,
    RouteKey,
    make_route_key,
    masked_prefix,
    source_text,
    validate_interface_name,
)

MAX_INTERVAL = 3600.0


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
    if not 0 <= value <= MAX_INTERVAL:
        raise InvalidArgument(f"interval {text!r} is not valid; use 0 to 3600 seconds")
    return value


def route_spec(values: dict[str, Any]) -> RouteSpec:
    """Validate early (friendly messages); the service stays the authority."""
    table = parse_uint(values.get("table"), "table")
    source, group = route_key(values, table).texts  # as the service writes them
    validate_interface_name(values["input"])
    outputs = values.get("outputs", [])  # none: a blocking route
    for name in outputs:
        validate_interface_name(name)
    return RouteSpec(
        source="" if source == "*" else source,
        group=group,
        input=values["input"],
        outputs=tuple(outputs),
        persistent=False if values.get("temporary") else None,
        lease=True if values.get("lease") else None,
        table=table,
        replace=True if values.get("replace") else None,
    )


def route_key(values: dict[str, Any], table: int | None) -> RouteKey:
    """The route a command names; a prefix with host bits is taken as its network, with
    a warning on stderr."""
    for role in ("source", "group"):
        network = masked_prefix(values.get(role) or "")
        if network is not None:
            print(f"{PROG}: warning: {values[role].strip()} taken as {network}", file=sys.stderr)
    return make_route_key(values.get("source", ""), values["group"], table or 0)


def family_option(values: dict[str, Any], opts: argparse.Namespace) -> str | None:
    """The `family` keyword, else -4 or -6 alone, else both families (None)."""
    if "family" in values:
        return str(Family.parse(values["family"]))
    if opts.ipv4 and not opts.ipv6:
        return Family.IPV4.value
    if opts.ipv6 and not opts.ipv4:
        return Family.IPV6.value
    return None


# -- batch files -------------------------------------------------------------------------------
def parse_batch(lines: Sequence[str], name: str) -> list[RouteSpec]:
    """One route per line (`route add ...`, `mfc add ...` or `add ...`); '#' comments.
    Errors name the file and the line."""
    specs = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{name}:{number}"
        try:
            specs.append(_batch_line(text))
        except ValueError as exc:  # shlex
            raise UsageError(f"{where}: {exc}") from None
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}") from None
    return specs


def _batch_line(text: str) -> RouteSpec:
    tokens = shlex.split(text, comments=True)
    obj = resolve(tokens[0], ("route", "mfc", "add"), "command")
    if obj == "add":
        return route_spec(parse_keywords(GRAMMARS[("route", "add")], tokens[1:]))
    tokens = tokens[1:]
    if not tokens or resolve(tokens[0], ("add",), "command") != "add":
        raise UsageError("only `route add ...` and `mfc add ...` lines are allowed")
    if obj == "mfc":
        return route_spec(parse_mfc("add", tokens[1:]))
    return route_spec(parse_keywords(GRAMMARS[("route", "add")], tokens[1:]))


def read_batch(name: str) -> list[RouteSpec]:
    """The routes of file `name` (`-` is standard input); none at all is an error."""
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


# -- the whole command -------------------------------------------------------------------------
def prepare(command: Command, opts: argparse.Namespace) -> dict[str, Any]:
    """Validate and convert every argument before connecting: friendly early errors."""
    values = command.values
    ready: dict[str, Any] = {
        "table": parse_uint(values.get("table"), "table"),
        "family": family_option(values, opts),
    }
    if "interface" in values:
        ready["interface"] = validate_interface_name(values["interface"])
    if command.obj == "route" and command.verb == "del" and "input" in values:
        ready["input"] = validate_interface_name(values["input"])
    if command.obj == "group":
        joining = command.verb in ("join", "leave")
        key = route_key(values, ready["table"]) if joining else None
        ready.update(prepare_group(command, key))
    else:
        ready.update(_route_arguments(command, ready["table"]))
    ready["source_given"] = "source" in values
    ready["learned"] = bool(values.get("learned"))
    if command.obj == "vif" and command.verb == "add":
        ready["threshold"] = parse_uint(values.get("threshold"), "threshold", 255)
        ready["persistent"] = False if values.get("temporary") else None
        ready["mrdisc"] = True if values.get("mrdisc") else None
    if command.obj == "monitor":
        ready["count"] = parse_uint(values.get("count"), "count")
    if command.obj == "diagnose":
        ready["interval"] = parse_seconds(values.get("interval"), 2.0)
    if command.obj == "batch":
        ready["specs"] = read_batch(values["file"])
    if command.obj == "config" and "file" in values:
        ready["file"] = values["file"]
        configuration = load_file(Path(values["file"]))
        if command.verb == "import":
            configuration = importable(configuration)
        ready["configuration"] = configuration
    return ready


def _route_arguments(command: Command, table: int | None) -> dict[str, Any]:
    """The route a command names: a whole RouteSpec for `route add`, else the group
    and source in the service's spelling (so that show filters compare equal)."""
    values = command.values
    if command.obj == "route" and command.verb == "add":
        return {"spec": route_spec(values)}
    if command.obj in ("route", "diagnose") and "group" in values:
        key = route_key(values, table)
        source, group = key.texts
        found: dict[str, Any] = {
            "group": group,
            "source": None if source == "*" else source,
            "group_family": str(key.family),
        }
        if "outputs" in values:  # add-output, del-output
            found["outputs"] = [validate_interface_name(name) for name in values["outputs"]]
            found["input"] = values.get("input") and validate_interface_name(values["input"])
        return found
    if command.obj == "route" and "source" in values:
        source = source_text(values["source"])
        return {"source": None if source == "*" else source}
    return {}
