"""Compaction: the journals folded into a new snapshot by a worker thread, so that no
call waits behind a rewrite of every route (state.py says why any moment of it is safe
to crash in).

On the event loop, between two changes, the journal is set aside (StateFile.rotate)
and the state is taken as it is: lists of the records, which are immutable (a route,
or its JSON text). The worker renders them, writes the snapshot and removes the
journals it holds; the loop keeps appending changes to the new journal meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from ..model import Route
from .state import StateFile, StateFileError, remove_journals
from .staterecords import render, route_record

log = logging.getLogger(__name__)


def compaction_steps(
    file: StateFile,
    routes: list[Route | str],
    vifs: list[str],
    joins: list[str],
    journals: list[Path],
) -> Iterator[str]:
    """Write the snapshot of `routes`, `vifs` and `joins` (records, or routes still to
    render), then remove `journals`, which it holds. Yields after each step that
    changes the files, naming it, so that a test can stop it anywhere as a crash
    would. Raises StateFileError."""
    text = render(
        [record if isinstance(record, str) else route_record(record) for record in routes],
        vifs,
        joins,
    )
    yield "rendered"
    file.write_snapshot(text)
    yield "snapshot written"
    for path in journals:
        remove_journals([path])
        yield f"{path.name} removed"


class Compaction:
    """One compaction running in a worker thread. `entries`: the journal entries its
    snapshot holds (the file's count drops by as many once it is complete)."""

    def __init__(self, steps: Iterator[str], entries: int) -> None:
        self.entries = entries
        self.error: StateFileError | None = None
        self._steps = steps
        self._thread = threading.Thread(target=self._run, name="mfc-dbus compaction",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        try:
            for _ in self._steps:
                pass
        except StateFileError as exc:
            self.error = exc
            log.error("%s; the journals are kept and compacted later", exc)
        except Exception as exc:  # a bug: keep the journals, say so
            self.error = StateFileError(f"compaction failed: {exc}")
            log.exception("compaction failed; the journals are kept")

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> None:
        self._thread.join()
