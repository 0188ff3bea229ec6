"""The context of one change to the engine's state: how kernel refusals are handled,
whether the state file records it, how it is undone, and what the listeners are told
once it has been made."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Family, Route
from .events import Event
from .undo import NO_UNDO, UndoLog

RouteChange = tuple[Route | None, Route | None]  # (before, after) of one configured key
VifId = tuple[Family, int, str]  # (family, table, interface)


@dataclass(slots=True)
class Change:
    # A kernel refusal raises and the whole change is undone (a call); otherwise it is
    # logged and the rest goes on (upcalls, hotplug, expiry, start-up).
    strict: bool
    # The change is written to the state file before the call returns. The engine's
    # records of the persistent routes are kept up to date either way.
    persist: bool
    undo: UndoLog
    events: list[Event] = field(default_factory=list)  # told once the change is made

    @classmethod
    def call(cls) -> Change:
        """A caller's change: all or nothing, durable before it returns."""
        return cls(strict=True, persist=True, undo=UndoLog())

    @classmethod
    def best_effort(cls) -> Change:
        """A change the kernel or start-up causes: applied as far as it goes, never
        undone, not written to the state file (it replays what the file holds, or
        what the file does not keep)."""
        return cls(strict=False, persist=False, undo=NO_UNDO)

    def report(self, event: Event) -> None:
        self.events.append(event)

    def roll_back(self) -> None:
        self.undo.undo()
        self.events.clear()
