"""Undo log: every change made during one engine call records how to revert it, so a
call that fails half-way (kernel refusal, full VIF table, disk error) leaves nothing
behind — the all-or-nothing guarantee of batches."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Journal:
    def __init__(self) -> None:
        self._undo: list[tuple[Callable[..., object], tuple]] = []

    def push(self, func: Callable[..., object], *args: object) -> None:
        self._undo.append((func, args))

    def undo(self) -> None:
        while self._undo:
            func, args = self._undo.pop()
            try:
                func(*args)
            except Exception:  # keep undoing the rest; the first error is re-raised
                log.exception("rollback step %s%r failed", getattr(func, "__name__", func), args)


class NullJournal(Journal):
    """For changes that are not undone (hotplug, upcalls, start-up): records nothing."""

    def push(self, func: Callable[..., object], *args: object) -> None:
        pass


NULL = NullJournal()


def put_or_pop(mapping: dict, key: object, value: object) -> None:
    """An undo step for a dict entry: set it back to `value`, or remove it (None)."""
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value
