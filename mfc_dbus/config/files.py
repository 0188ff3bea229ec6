"""Reading the configuration files: the main file, its includes and the drop-in directory."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from .problems import Location, Problem
from .syntax import Directive, parse_text

CONFIG_FILE = Path("/etc/mfc-dbus/mfc-dbus.conf")
DROP_IN_PATTERN = "conf.d/*.conf"  # beside the main file
MAX_INCLUDE_DEPTH = 16
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(slots=True)
class Reading:
    directives: list[Directive] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read, in order


def read_configuration(main: Path = CONFIG_FILE, *, drop_ins: bool = True) -> Reading:
    """The main file (absent is fine: no configuration) and then, with drop_ins, every
    conf.d/*.conf beside it not already included, in name order."""
    reading = Reading()
    if main.exists() or main.is_symlink():
        _read_file(main, None, [], reading)
    if drop_ins:
        seen = {path.resolve() for path in reading.files}
        for name in sorted(glob.glob(str(main.parent / DROP_IN_PATTERN))):
            if Path(name).resolve() not in seen:
                _read_file(Path(name), None, [], reading)
    return reading


def read_file(path: Path) -> Reading:
    """One file and what it includes (`config check FILE`, `config import FILE`)."""
    reading = Reading()
    _read_file(path, None, [], reading)
    return reading


def _read_file(
    path: Path, included_at: Location | None, stack: list[Path], reading: Reading
) -> None:
    where = included_at or Location(str(path), 0, 0)
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(step) for step in [*stack, resolved])
        reading.problems.append(Problem(where, f"include loop: {chain}"))
        return
    if len(stack) >= MAX_INCLUDE_DEPTH:
        reading.problems.append(
            Problem(where, f"includes nest deeper than {MAX_INCLUDE_DEPTH} files")
        )
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reading.problems.append(Problem(where, f"cannot read {path}: {reason}"))
        return
    reading.files.append(path)
    directives, problems = parse_text(text, str(path))
    reading.problems.extend(problems)
    for directive in directives:
        if directive.command != "include":
            reading.directives.append(directive)
            continue
        assert directive.subject is not None
        for included in _expand(directive, path):
            _read_file(included, directive.location, [*stack, resolved], reading)


def _expand(directive: Directive, including: Path) -> list[Path]:
    """An include's pattern, relative to the including file's directory; a glob may match
    nothing (an empty drop-in directory), a plain path must exist."""
    assert directive.subject is not None
    pattern = os.path.join(including.parent, os.path.expanduser(directive.subject.text))
    if not _GLOB_CHARACTERS.intersection(directive.subject.text):
        return [Path(pattern)]
    matches = sorted(glob.glob(pattern))
    return [Path(name) for name in matches if not os.path.isdir(name)]
