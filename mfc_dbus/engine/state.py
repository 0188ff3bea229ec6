"""The state file on disk: the snapshot (`state.json`) and its journals.

Snapshot writes are atomic (temporary file in the same directory, fsync, rename, fsync
of the directory): a crash leaves either the old or the new file, never a mix.
Between snapshots each change is appended to `state.json.journal` (one line per
change, fdatasync'ed before the call returns): a call costs one small append instead
of a rewrite of every route. The format: staterecords.py; reading: stateparse.py.

A compaction (compaction.py) folds the journal into a new snapshot while calls go on:
the journal is renamed to `state.json.journal.N` (N counting up) and new changes go to
a new `state.json.journal`; once the snapshot of everything before the rename is in
place, the numbered journals it holds are removed. Start-up reads the snapshot,
replays the numbered journals in order, then the journal. Every entry sets or removes
one thing, so replaying a journal the snapshot already holds changes nothing: a crash
at any point of a compaction loses nothing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import MfcError
from .stateparse import SavedState, parse
from .staterecords import SCHEMA_VERSION

log = logging.getLogger(__name__)


class StateFileError(MfcError):
    """The state file cannot be read, parsed or written."""


class StateFile:
    """The snapshot and its append-only journals. Not thread-safe: the event loop
    appends and rotates; a compaction's worker only writes the snapshot and removes
    the numbered journals it was given."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(f"{self.path.name}.journal")
        self.journal_entries = 0  # changes in the journals since the last snapshot
        self._fd: int | None = None
        self._size = 0

    def numbered_journals(self) -> list[Path]:
        """The journals set aside by compactions not yet complete, oldest first."""
        prefix = f"{self.journal_path.name}."
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        found = [
            (int(name[len(prefix) :]), name)
            for name in names
            if name.startswith(prefix) and name[len(prefix) :].isascii()
            and name[len(prefix) :].isdigit()
        ]  # fmt: skip
        return [self.path.parent / name for _, name in sorted(found)]

    def load(self) -> SavedState:
        """The saved state (snapshot + journals); absent files are an empty state.
        Raises StateFileError."""
        text = self._read(self.path, "state file", missing=None)
        earlier = []
        for path in self.numbered_journals():
            # Never absent here: only a compaction removes one, and none runs during a
            # load (persist.py waits for it).
            earlier.append((str(path), self._read(path, "state file journal", missing=None)))
        journal = self._read(self.journal_path, "state file journal", missing="")
        assert journal is not None
        if any(part is None for _, part in earlier):
            raise StateFileError(f"state file {self.path} changed while it was read")
        journals = [(name, part or "") for name, part in earlier]
        self.journal_entries = sum(part.count("\n") for _, part in journals) + journal.count("\n")
        if text is None and not self.journal_entries and not journal:
            return SavedState()
        try:
            return parse(text if text is not None else _EMPTY, journal, str(self.journal_path),
                         journals)  # fmt: skip
        except (ValueError, MfcError) as exc:
            detail = exc.message if isinstance(exc, MfcError) else str(exc)
            raise StateFileError(f"state file {self.path} is not valid: {detail}") from None

    @staticmethod
    def _read(path: Path, what: str, missing: str | None) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return missing
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"{what} {path} cannot be read: {exc}") from None

    def set_aside(self) -> Path:
        """Rename a bad state file (and its journals) out of the way (never overwrite or
        delete them); returns the new name of the state file."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists() or aside.with_name(f"{aside.name}.journal").exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        numbered = self.numbered_journals()
        if self.path.exists() or not (self.journal_path.exists() or numbered):
            os.rename(self.path, aside)
        for path in numbered:
            suffix = path.name[len(self.journal_path.name) :]  # ".N"
            os.rename(path, aside.with_name(f"{aside.name}.journal{suffix}"))
        if self.journal_path.exists():
            os.rename(self.journal_path, aside.with_name(f"{aside.name}.journal"))
        fsync_dir(self.path.parent)
        return aside

    def append(self, entries: list[str]) -> None:
        """Append one change (its entries on one line: a torn line is dropped whole, so
        a batch stays all-or-nothing) durably (write + fdatasync); raises
        StateFileError and leaves the journal as it was."""
        data = ("[" + ", ".join(entries) + "]\n").encode()
        try:
            if self._fd is None:
                self._open_journal()
            fd = self._fd
            assert fd is not None
            view = memoryview(data)
            offset = self._size
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
            os.fdatasync(fd)
        except OSError as exc:
            if self._fd is not None:
                try:
                    os.ftruncate(self._fd, self._size)  # no half line before the next
                except OSError:
                    pass
            raise self._write_failed(exc) from None
        self._size = offset
        self.journal_entries += len(entries)

    def _open_journal(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A torn last line (a crash mid-append): the next line must not join it.
                size = os.pread(fd, size, 0).rfind(b"\n") + 1
                os.ftruncate(fd, size)
            fsync_dir(self.path.parent)  # the journal's name must survive a crash
        except OSError:
            os.close(fd)
            raise
        self._fd, self._size = fd, size

    def _write_failed(self, exc: OSError) -> StateFileError:
        return StateFileError(
            f"cannot write state file {self.path}: {exc.strerror or exc}; "
            "the change was not applied"
        )

    def rotate(self) -> list[Path]:
        """Set the journal aside as the next numbered journal, between two changes: the
        journals that a snapshot of the state as it is now holds (all there are).
        Raises StateFileError (nothing is renamed then)."""
        numbered = self.numbered_journals()
        self.close()
        try:
            if self.journal_path.exists() and self.journal_path.stat().st_size:
                last = int(numbered[-1].name.rsplit(".", 1)[1]) if numbered else 0
                target = self.journal_path.with_name(f"{self.journal_path.name}.{last + 1}")
                os.rename(self.journal_path, target)
                fsync_dir(self.path.parent)  # new changes must never land before it
                numbered.append(target)
        except OSError as exc:
            raise StateFileError(f"cannot set the journal {self.journal_path} aside: "
                                 f"{exc.strerror or exc}") from None  # fmt: skip
        return numbered

    def write_snapshot(self, text: str) -> None:
        """Replace the snapshot atomically and durably; raises StateFileError. Thread
        safe with appends (another file)."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.tmp-{os.getpid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(text.encode())
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            fsync_dir(directory)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise self._write_failed(exc) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._size = 0


def remove_journals(paths: list[Path]) -> None:
    """After a snapshot: the numbered journals it holds go (a failure is harmless:
    replaying them again changes nothing)."""
    try:
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            fsync_dir(paths[0].parent)
    except OSError as exc:
        log.warning("cannot remove the compacted journal %s: %s", path, exc)


_EMPTY = f'{{"schema": {SCHEMA_VERSION}}}'


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
