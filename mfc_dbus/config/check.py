"""Directives into a checked configuration: routes, group joins and interface settings.

Every problem is collected with its location; a configuration with any problem is
refused as a whole (ConfigurationError), so nothing of a bad file is ever applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidArgument
from ..model import (
    RouteKey,
    make_route_key,
    masked_prefix,
    validate_interface_name,
    wildcard_stem,
)
from .problems import ConfigurationError, Location, Problem
from .syntax import Directive, Token

ANY_SOURCE = "*"


class _Addressed:
    """Source, group and table of a line, read once into a RouteKey."""

    __slots__ = ()
    key: RouteKey

    @property
    def source(self) -> str:  # "*" for any source
        return self.key.texts[0]

    @property
    def group(self) -> str:
        return self.key.texts[1]

    @property
    def table(self) -> int:
        return self.key.table


@dataclass(frozen=True, slots=True)
class ConfigRoute(_Addressed):
    input: str  # an interface name, or a wildcard such as eth+
    key: RouteKey
    outputs: tuple[str, ...]
    origin: Location | None = None  # None: not from a file (export)


@dataclass(frozen=True, slots=True)
class ConfigJoin(_Addressed):
    interface: str
    key: RouteKey
    origin: Location | None = None  # None: not from a file (export)


@dataclass(frozen=True, slots=True)
class ConfigInterface:
    interface: str
    enabled: bool
    mrdisc: bool
    ttl_threshold: int
    table: int
    origin: Location | None = None  # None: not from a file (export)


@dataclass(slots=True)
class Configuration:
    routes: list[ConfigRoute] = field(default_factory=list)
    joins: list[ConfigJoin] = field(default_factory=list)
    interfaces: list[ConfigInterface] = field(default_factory=list)
    # Accepted, but worth saying: a prefix with host bits, taken as its network.
    warnings: list[Problem] = field(default_factory=list)


def check(directives: list[Directive], problems: list[Problem]) -> Configuration:
    """The configuration the directives describe; raises ConfigurationError listing every
    problem (those passed in, from reading, first)."""
    problems = list(problems)
    configuration = Configuration()
    for directive in directives:
        try:
            if directive.command == "mroute":
                configuration.routes.append(_route(directive))
            elif directive.command == "mgroup":
                configuration.joins.append(_join(directive))
            else:
                configuration.interfaces.append(_interface(directive))
        except _Refused as refused:
            problems.append(refused.problem)
        configuration.warnings.extend(_masked(directive))
    problems.extend(_duplicates(configuration))
    if problems:
        raise ConfigurationError(problems)
    return configuration


class _Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _required(directive: Directive, keyword: str, what: str) -> Token:
    token = directive.values.get(keyword)
    if token is None:
        raise _Refused(
            Problem(directive.location, f"{directive.command} needs '{keyword} {what}'")
        )
    return token


def _interface_name(token: Token, directive: Directive, wildcard: bool) -> str:
    name = token.text
    stem = wildcard_stem(name) if wildcard else None
    checked = name if stem is None else stem
    try:
        validate_interface_name(checked)
    except InvalidArgument as exc:
        hint = " (a wildcard such as eth+ is allowed here)" if wildcard else ""
        raise _Refused(Problem(directive.location.at(token.column), exc.message + hint)) from None
    return name


def _table(directive: Directive) -> int:
    token = directive.values.get("table")
    if token is None:
        return 0
    if not token.text.isdigit():
        raise _Refused(
            Problem(
                directive.location.at(token.column),
                f"table {token.text!r} is not a number; use 0 (the default) to 4294967295",
            )
        )
    return int(token.text)


def _masked(directive: Directive) -> list[Problem]:
    """A warning for each address prefix of the line with host bits set."""
    found = []
    for keyword in ("source", "group"):
        token = directive.values.get(keyword)
        network = masked_prefix(token.text) if token is not None else None
        if token is not None and network is not None:
            location = directive.location.at(token.column)
            found.append(Problem(location, f"{token.text} taken as {network}"))
    return found


def _addresses(directive: Directive) -> RouteKey:
    """Source ("*" when none is written), group and table, read by the model's parser."""
    group = _required(directive, "group", "GROUP[/LEN]")
    source = directive.values.get("source")
    source_text = source.text if source is not None else ANY_SOURCE
    try:
        return make_route_key(source_text, group.text, _table(directive))
    except InvalidArgument as exc:
        column = group.column
        if source is not None and "source" in exc.message:
            column = source.column
        raise _Refused(Problem(directive.location.at(column), exc.message)) from None


def _route(directive: Directive) -> ConfigRoute:
    input_token = _required(directive, "from", "IIF")
    key = _addresses(directive)
    if "to" not in directive.flags:
        raise _Refused(
            Problem(directive.location, "mroute needs 'to OIF [OIF ...]' after its addresses")
        )
    if not directive.outputs:
        to = directive.flags["to"]
        raise _Refused(
            Problem(directive.location.at(to.column), "'to' needs at least one interface")
        )
    outputs = tuple(_interface_name(out, directive, wildcard=False) for out in directive.outputs)
    name = _interface_name(input_token, directive, wildcard=True)
    if not key.is_template and wildcard_stem(name) is not None:
        raise _Refused(
            Problem(
                directive.location.at(input_token.column),
                f"interface wildcard {name!r} cannot be the input of the exact route "
                f"({key.texts[0]}, {key.texts[1]}): the kernel forwards an (S,G) from one "
                "input; name one interface, or use any source or a source prefix",
            )
        )
    return ConfigRoute(name, key, outputs, directive.location)


def _join(directive: Directive) -> ConfigJoin:
    interface = _required(directive, "from", "IIF")
    key = _addresses(directive)
    name = _interface_name(interface, directive, wildcard=True)
    return ConfigJoin(name, key, directive.location)


def _interface(directive: Directive) -> ConfigInterface:
    assert directive.subject is not None
    name = _interface_name(directive.subject, directive, wildcard=True)
    if "enable" in directive.flags and "disable" in directive.flags:
        column = directive.flags["disable"].column
        raise _Refused(
            Problem(directive.location.at(column), "phyint is either enable or disable")
        )
    if "disable" in directive.flags and "mrdisc" in directive.flags:
        raise _Refused(
            Problem(
                directive.location.at(directive.flags["mrdisc"].column),
                "mrdisc on a disabled phyint would never run: router discovery needs the "
                "interface in multicast routing; drop 'disable' or 'mrdisc'",
            )
        )
    ttl = directive.values.get("ttl-threshold")
    threshold = 1
    if ttl is not None:
        if not ttl.text.isdigit() or not 1 <= int(ttl.text) <= 255:
            raise _Refused(
                Problem(
                    directive.location.at(ttl.column),
                    f"ttl-threshold {ttl.text!r} is not valid; use 1 to 255",
                )
            )
        threshold = int(ttl.text)
    return ConfigInterface(
        name,
        "disable" not in directive.flags,
        "mrdisc" in directive.flags,
        threshold,
        _table(directive),
        directive.location,
    )


def _duplicates(configuration: Configuration) -> list[Problem]:
    keyed: list[tuple[tuple, Location | None, str]] = []
    for route in configuration.routes:
        what = f"route {route.source} {route.group}"
        if route.key.is_template:  # one (*,G) or prefix route per input
            keyed.append(
                (("route", route.key, route.input), route.origin, f"{what} from {route.input}")
            )
        else:
            keyed.append((("route", route.key), route.origin, what))
    for join in configuration.joins:
        what = f"mgroup {join.interface} {join.group}"
        keyed.append((("join", join.interface, join.key), join.origin, what))
    for interface in configuration.interfaces:
        what = f"phyint {interface.interface}"
        keyed.append((("phyint", interface.interface, interface.table), interface.origin, what))
    problems: list[Problem] = []
    first_at: dict[tuple, Location | None] = {}
    for key, origin, what in keyed:
        if key not in first_at:
            first_at[key] = origin
        elif origin is not None:
            problems.append(Problem(origin, f"{what} is already configured at {first_at[key]}"))
    return problems
