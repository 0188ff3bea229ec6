"""The words of the mfc-dbus command line: objects, commands, keywords, options.

Commands follow iproute2: `mfc-dbus route add 232.1.1.1 from 192.0.2.1 iif eth0 oif
eth1 eth2`; any prefix of a command word works and, as in `ip`, a prefix that fits
several words means the first one in the order of the usage text (`mfc-dbus r s` is
`route show`). This module only splits and names the words; cli_prepare checks values.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from .client_bus import DEFAULT_TIMEOUT

PROG = "mfc-dbus"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 4

USAGE = f"""\
usage: {PROG} [OPTIONS] OBJECT COMMAND [ARGUMENTS]

  route add GROUP [from SOURCE] iif IF [oif IF ...] [table N] [lease] [temporary]
            [replace]       add, or replace all outputs of, a route (no oif: drop)
  route del GROUP [from SOURCE] [iif IF] [table N]
  route add-output GROUP [from SOURCE] [iif IF] oif IF [IF ...] [table N]
                            add outputs, keeping the route's others (smcroute's add)
  route del-output GROUP [from SOURCE] [iif IF] oif IF [IF ...] [table N]
                            remove outputs, keeping the others (none left: drop)
  route show [GROUP] [from SOURCE] [table N] [family ipv4|ipv6]
  route flush [learned] [table N] [family ipv4|ipv6]
  vif add IF [family ipv4|ipv6] [table N] [threshold TTL] [mrdisc] [temporary]
  vif del IF [family ipv4|ipv6] [table N]
  vif show [IF] [family ipv4|ipv6] [table N]
  group join IF GROUP [source S] [table N] [lease] [temporary]
  group leave IF GROUP [source S] [table N]
  group show [IF] [table N] [family ipv4|ipv6]
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
  config check FILE         read a configuration file (mfc-dbus.conf(5)) without
                            applying it; exit status 78 names every problem
  config export             print the routes, VIF settings and group joins in that
                            syntax
  config import FILE        apply a file's routes, VIF settings and group joins
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

exit status: 0 ok, 1 error, 2 usage or invalid argument, 4 not authorized,
             78 a configuration file with problems
"""

# Order matters: a prefix that fits several words means the first (as in `ip`).
OBJECTS = (
    "route",
    "vif",
    "group",
    "mfc",
    "show",
    "monitor",
    "reload",
    "batch",
    "diagnose",
    "status",
    "config",
    "help",
)
VERBS = {
    "route": ("add", "del", "show", "flush", "add-output", "del-output", "list", "delete"),
    "vif": ("add", "del", "show", "list", "delete"),
    "group": ("join", "leave", "show", "list"),
    "mfc": ("add", "del", "show", "delete", "list"),
    "config": ("check", "export", "import"),
}
DEFAULT_VERB = {"route": "show", "vif": "show", "group": "show", "mfc": "show"}
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
Kind = Literal["value", "list", "flag"]


@dataclass
class Grammar:
    """Keywords a command accepts: keyword -> (field, kind). A `value` keyword takes the
    next word, a `list` every word up to the next keyword, a `flag` none."""

    keywords: dict[str, tuple[str, Kind]]
    positionals: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    usage: str = ""


ROUTE_KEYWORDS: dict[str, tuple[str, Kind]] = {
    "to": ("group", "value"),
    "group": ("group", "value"),
    "from": ("source", "value"),
    "source": ("source", "value"),
    "table": ("table", "value"),
}
OUTPUT_KEYWORDS: dict[str, tuple[str, Kind]] = {
    **ROUTE_KEYWORDS,
    "iif": ("input", "value"),
    "input": ("input", "value"),
    "oif": ("outputs", "list"),
    "oifs": ("outputs", "list"),
    "outputs": ("outputs", "list"),
}
VIF_KEYWORDS: dict[str, tuple[str, Kind]] = {
    "dev": ("interface", "value"),
    "family": ("family", "value"),
    "table": ("table", "value"),
}
GROUP_KEYWORDS: dict[str, tuple[str, Kind]] = {
    "dev": ("interface", "value"),
    "group": ("group", "value"),
    "source": ("source", "value"),
    "from": ("source", "value"),
    "table": ("table", "value"),
}
GRAMMARS = {
    ("route", "add"): Grammar(
        {
            **OUTPUT_KEYWORDS,
            "lease": ("lease", "flag"),
            "temporary": ("temporary", "flag"),
            "replace": ("replace", "flag"),
        },
        positionals=("group", "source"),
        required=("group", "input"),
        usage="route add GROUP [from SOURCE] iif IF [oif IF ...] [table N] [lease] "
        "[temporary] [replace]",
    ),
    ("route", "add-output"): Grammar(
        OUTPUT_KEYWORDS,
        positionals=("group", "source"),
        required=("group", "outputs"),
        usage="route add-output GROUP [from SOURCE] [iif IF] oif IF [IF ...] [table N]",
    ),
    ("route", "del-output"): Grammar(
        OUTPUT_KEYWORDS,
        positionals=("group", "source"),
        required=("group", "outputs"),
        usage="route del-output GROUP [from SOURCE] [iif IF] oif IF [IF ...] [table N]",
    ),
    ("route", "del"): Grammar(
        {**ROUTE_KEYWORDS, "iif": ("input", "value"), "input": ("input", "value")},
        positionals=("group", "source"),
        required=("group",),
        usage="route del GROUP [from SOURCE] [iif IF] [table N]",
    ),
    ("route", "show"): Grammar(
        {**ROUTE_KEYWORDS, "family": ("family", "value")},
        positionals=("group", "source"),
        usage="route show [GROUP] [from SOURCE] [table N] [family F]",
    ),
    ("route", "flush"): Grammar(
        {
            "table": ("table", "value"),
            "family": ("family", "value"),
            "learned": ("learned", "flag"),
        },
        usage="route flush [learned] [table N] [family F]",
    ),
    ("vif", "add"): Grammar(
        {
            **VIF_KEYWORDS,
            "threshold": ("threshold", "value"),
            "ttl-threshold": ("threshold", "value"),
            "mrdisc": ("mrdisc", "flag"),
            "temporary": ("temporary", "flag"),
        },
        positionals=("interface",),
        required=("interface",),
        usage="vif add IF [family F] [table N] [threshold TTL] [mrdisc] [temporary]",
    ),
    ("vif", "del"): Grammar(
        VIF_KEYWORDS,
        positionals=("interface",),
        required=("interface",),
        usage="vif del IF [family F] [table N]",
    ),
    ("vif", "show"): Grammar(
        VIF_KEYWORDS,
        positionals=("interface",),
        usage="vif show [IF] [family F] [table N]",
    ),
    ("group", "join"): Grammar(
        {**GROUP_KEYWORDS, "lease": ("lease", "flag"), "temporary": ("temporary", "flag")},
        positionals=("interface", "group"),
        required=("interface", "group"),
        usage="group join IF GROUP [source S] [table N] [lease] [temporary]",
    ),
    ("group", "leave"): Grammar(
        GROUP_KEYWORDS,
        positionals=("interface", "group"),
        required=("interface", "group"),
        usage="group leave IF GROUP [source S] [table N]",
    ),
    ("group", "show"): Grammar(
        {"dev": ("interface", "value"), **VIF_KEYWORDS},
        positionals=("interface",),
        usage="group show [IF] [table N] [family F]",
    ),
    ("monitor", ""): Grammar({"count": ("count", "value")}, usage="monitor [count N]"),
    ("diagnose", ""): Grammar(
        {**ROUTE_KEYWORDS, "interval": ("interval", "value")},
        positionals=("group", "source"),
        required=("group",),
        usage="diagnose GROUP [SOURCE] [table N] [interval SECONDS]",
    ),
    ("batch", ""): Grammar({}, positionals=("file",), required=("file",), usage="batch FILE|-"),
    ("reload", ""): Grammar({}, usage="reload"),
    ("status", ""): Grammar({}, usage="status"),
    ("config", "check"): Grammar(
        {}, positionals=("file",), required=("file",), usage="config check FILE"
    ),
    ("config", "export"): Grammar({}, usage="config export"),
    ("config", "import"): Grammar(
        {}, positionals=("file",), required=("file",), usage="config import FILE"
    ),
}


def parse_keywords(grammar: Grammar, tokens: Sequence[str]) -> dict[str, Any]:
    """The values of `tokens` by field name; UsageError names what is wrong."""
    values: dict[str, Any] = {}
    positionals = list(grammar.positionals)
    i = 0
    while i < len(tokens):
        if tokens[i] in grammar.keywords:
            i = _take_keyword(grammar, tokens, i, values)
        else:
            _take_positional(grammar, positionals, values, tokens[i])
            i += 1
    missing = [name for name in grammar.required if name not in values]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}; usage: {grammar.usage}")
    return values


def _take_positional(
    grammar: Grammar, positionals: list[str], values: dict[str, Any], token: str
) -> None:
    """A word that is no keyword fills the first positional not yet given by keyword."""
    while positionals and positionals[0] in values:
        positionals.pop(0)
    if not positionals:
        raise UsageError(f"unexpected argument {token!r}; usage: {grammar.usage}")
    values[positionals.pop(0)] = token


def _take_keyword(grammar: Grammar, tokens: Sequence[str], i: int, values: dict[str, Any]) -> int:
    """Store the keyword at tokens[i] and its value; returns the index after them."""
    token = tokens[i]
    dest, kind = grammar.keywords[token]
    if dest in values:
        raise UsageError(f"{token!r} given twice; usage: {grammar.usage}")
    i += 1
    if kind == "flag":
        values[dest] = True
        return i
    if kind == "value":
        if i >= len(tokens):
            raise UsageError(f"{token!r} needs a value; usage: {grammar.usage}")
        values[dest] = tokens[i]
        return i + 1
    items = []
    while i < len(tokens) and tokens[i] not in grammar.keywords:
        items.append(tokens[i])
        i += 1
    if not items:
        raise UsageError(f"{token!r} needs at least one interface; usage: {grammar.usage}")
    values[dest] = items
    return i


# -- the legacy `mfc add|del` form ------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_mfc(verb: str, tokens: Sequence[str]) -> dict[str, Any]:
    """`mfc add|del --source S --group G ...`, the first design's form, as keyword values."""
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


# -- the whole command -------------------------------------------------------------------------
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
        if not rest and obj not in DEFAULT_VERB:
            raise UsageError(f"{obj} needs a command: {', '.join(VERBS[obj])}")
        verb = resolve(rest[0], VERBS[obj], f"{obj} command") if rest else DEFAULT_VERB[obj]
        return _object_command(obj, verb, rest[1:])
    if obj == "help":
        return Command("help", "", {})
    return Command(obj, "", parse_keywords(GRAMMARS[(obj, "")], rest))


def _object_command(obj: str, verb: str, rest: Sequence[str]) -> Command:
    """`route|vif|mfc VERB ...`; `mfc` is the legacy spelling of `route`."""
    if obj != "mfc":
        return Command(obj, verb, parse_keywords(GRAMMARS[(obj, verb)], rest))
    if verb == "show":
        return Command("route", "show", parse_keywords(GRAMMARS[("route", "show")], rest))
    return Command("route", verb, parse_mfc(verb, rest))


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
