"""One configuration file's text into directives, in smcroute.conf's syntax.

    phyint IFNAME [enable|disable] [mrdisc] [ttl-threshold N] [table N]
    mgroup from IIF [source ADDR[/LEN]] group GROUP[/LEN] [table N]
    mroute from IIF [source ADDR[/LEN]] group GROUP[/LEN] [table N] to OIF [OIF ...]
    include PATTERN

Keywords come in any order before `to`, which takes the rest of the line. `#` starts a
comment anywhere. `table` is ours (smcroute has one table per daemon). Addresses and
names stay text here; mfc_dbus.config.check gives them meaning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .problems import Location, Problem

# keyword -> takes a value
_ROUTE_KEYWORDS = {"from": True, "source": True, "group": True, "table": True, "to": True}
_JOIN_KEYWORDS = {"from": True, "source": True, "group": True, "table": True}
_PHYINT_KEYWORDS = {
    "enable": False,
    "disable": False,
    "mrdisc": False,
    "ttl-threshold": True,
    "table": True,
}
COMMANDS = ("phyint", "mgroup", "mroute", "include")
_ALIASES = {"ssmgroup": "mgroup"}  # smcroute 2.0's name, still accepted by smcrouted


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    column: int


@dataclass(slots=True)
class Directive:
    """A command and its keyword values, each with the location it was written at."""

    command: str
    location: Location
    subject: Token | None = None  # phyint's interface, include's pattern
    values: dict[str, Token] = field(default_factory=dict)
    flags: dict[str, Token] = field(default_factory=dict)
    outputs: list[Token] = field(default_factory=list)


def tokens(line: str) -> Iterator[Token]:
    """Whitespace-separated words with their 1-based columns, up to a comment."""
    column, length = 0, len(line)
    while column < length:
        while column < length and line[column].isspace():
            column += 1
        if column >= length or line[column] == "#":
            return
        start = column
        while column < length and not line[column].isspace() and line[column] != "#":
            column += 1
        yield Token(line[start:column], start + 1)


def parse_text(text: str, path: str) -> tuple[list[Directive], list[Problem]]:
    directives: list[Directive] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = list(tokens(line))
        if not words:
            continue
        directive = _parse_line(words, Location(path, number, words[0].column), problems)
        if directive is not None:
            directives.append(directive)
    return directives, problems


def _parse_line(words: list[Token], where: Location, problems: list[Problem]) -> Directive | None:
    command = _ALIASES.get(words[0].text, words[0].text)
    if command not in COMMANDS:
        problems.append(
            Problem(
                where,
                f"unknown command {words[0].text!r}; valid commands: {', '.join(COMMANDS)}",
            )
        )
        return None
    directive = Directive(command, where)
    rest = words[1:]
    if command in ("phyint", "include"):
        if not rest:
            what = "an interface name" if command == "phyint" else "a file or glob pattern"
            problems.append(Problem(where, f"{command} needs {what}"))
            return None
        directive.subject, rest = rest[0], rest[1:]
    if command == "include":
        if rest:
            problems.append(
                Problem(
                    where.at(rest[0].column),
                    f"include takes one file or glob pattern, not {len(rest) + 1} words",
                )
            )
            return None
        return directive
    keywords = {"phyint": _PHYINT_KEYWORDS, "mgroup": _JOIN_KEYWORDS, "mroute": _ROUTE_KEYWORDS}
    if not _parse_keywords(directive, rest, keywords[command], problems):
        return None
    return directive


def _parse_keywords(
    directive: Directive, words: list[Token], keywords: dict[str, bool], problems: list[Problem]
) -> bool:
    where = directive.location
    index = 0
    while index < len(words):
        word = words[index]
        takes_value = keywords.get(word.text)
        if takes_value is None:
            valid = " ".join(sorted(keywords))
            problems.append(
                Problem(
                    where.at(word.column),
                    f"unexpected {word.text!r} in {directive.command}; valid keywords: {valid}",
                )
            )
            return False
        if word.text in directive.values or word.text in directive.flags:
            problems.append(Problem(where.at(word.column), f"{word.text!r} given twice"))
            return False
        if word.text == "to":
            directive.flags["to"] = word
            directive.outputs = words[index + 1 :]
            return True
        if not takes_value:
            directive.flags[word.text] = word
            index += 1
            continue
        if index + 1 >= len(words):
            problems.append(Problem(where.at(word.column), f"{word.text!r} needs a value"))
            return False
        directive.values[word.text] = words[index + 1]
        index += 2
    return True
