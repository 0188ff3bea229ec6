"""Where in which file a configuration problem is, and the error that carries them all."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument

EX_CONFIG = 78  # sysexits.h: configuration error (smcrouted -F exits with it too)


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    line: int
    column: int

    def at(self, column: int) -> Location:
        return Location(self.path, self.line, column)

    def __str__(self) -> str:
        if self.line == 0:  # the file as a whole
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ConfigurationError(InvalidArgument):
    """A configuration that cannot be applied; nothing of it was."""

    def __init__(self, problems: list[Problem]) -> None:
        problems = sorted(
            problems, key=lambda p: (p.location.path, p.location.line, p.location.column)
        )
        self.problems = problems
        count = len(problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__("\n".join([head, *(str(problem) for problem in problems)]))
