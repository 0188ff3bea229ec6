"""Undo log: every change made during one engine call records how to revert it, so a
call that fails half-way (kernel refusal, full VIF table, disk error) leaves nothing
behind — the all-or-nothing guarantee of batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class UndoLog:
    def __init__(self) -> None:
        self._steps: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def push(self, func: Callable[..., object], *args: Any) -> None:
        self._steps.append((func, args))

    def undo(self) -> None:
        while self._steps:
            func, args = self._steps.pop()
            try:
                func(*args)
            except Exception:  # keep undoing the rest; the first error is re-raised
                log.exception("rollback step %s%r failed", getattr(func, "__name__", func), args)


class NoUndo(UndoLog):
    """For changes that are not undone (hotplug, upcalls, start-up): records nothing."""

    def push(self, func: Callable[..., object], *args: Any) -> None:
        pass


NO_UNDO = NoUndo()


def put_or_pop(mapping: dict[Any, Any], key: object, value: object) -> None:
    """An undo step for a dict entry: set it back to `value`, or remove it (None)."""
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value
