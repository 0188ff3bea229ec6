"""The persisted state file: persistent routes and explicit VIF settings.

Format (JSON, one route per line so that a person can read and edit it)::

    {"schema": 1, "generator": "mfc-dbus",
     "vifs": [{"interface": "eth0", "family": "ipv4", "table": 0, "ttl_threshold": 1},
              {"interface": "eth1", ..., "mrdisc": true}],  (mrdisc: only when on)
     "routes": [
    {"source": "*", "group": "233.252.0.1", "input": "eth0", "outputs": ["eth1"]},
    {"source": "10.1.0.0/16", "group": "ff3e::1", "table": 10, "input": "eth0", ...}
     ]}

Snapshot writes are atomic (temporary file in the same directory, fsync, rename, fsync
of the directory): a crash leaves either the old or the new file, never a mix.
Between snapshots each change is appended to `state.json.journal` (JSON lines,
fdatasync'ed before the call returns): a call costs one small append instead of a
rewrite of every route. Start-up reads the snapshot and replays the journal; the
journal is compacted into a new snapshot when it outgrows twice the snapshot and at
stop, never at start (a restart is ready without rewriting its routes). An
"unroute" entry names the input of a (*,G) or prefix route (one may exist per input);
one without it (written by 0.1) removes every such route of its addresses.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string  # the C one, a str
from pathlib import Path
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, TypeVar

from ..errors import MfcError
from ..gcpause import gc_paused
from ..model import (
    FAMILY_OF_SIZE,
    MAX_VIFS,
    Family,
    Route,
    RouteKey,
    VifConfig,
    VifKey,
    host_route,
    make_route_key,
)
from .joins import Join, JoinKey
from .joinstate import parse_joins, replay_join_entry
from .validate import check_interfaces, check_vif

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)
T = TypeVar("T")


class StateFileError(MfcError):
    """The state file cannot be read, parsed or written."""


@dataclass(frozen=True)
class SavedState:
    routes: tuple[Route, ...] = ()
    vifs: tuple[VifConfig, ...] = ()
    joins: tuple[Join, ...] = ()


# -- writing ----------------------------------------------------------------------------
def route_record(route: Route) -> str:
    """The JSON text of one persistent route, as written in the state file."""
    key = route.key
    source, group = key.texts
    table = f', "table": {key.table}' if key.table else ""
    outputs = ", ".join(map(_json_string, route.outputs))
    return (
        f'{{"source": "{source}", "group": "{group}"{table}, '
        f'"input": {_json_string(route.input)}, "outputs": [{outputs}]}}'
    )


def vif_record(config: VifConfig) -> str:
    record: dict[str, object] = {
        "interface": config.interface,
        "family": str(config.family),
        "table": config.table,
        "ttl_threshold": config.ttl_threshold,
    }
    if config.mrdisc:  # written only when on: files without it stay as they were
        record["mrdisc"] = True
    return json.dumps(record)


def render(
    route_records: list[str], vif_records: list[str], join_records: list[str] | None = None
) -> str:
    joins = ' "joins": [' + ",\n  ".join(join_records) + "],\n" if join_records else ""
    return (
        f'{{"schema": {SCHEMA_VERSION}, "generator": "mfc-dbus",\n{joins} "vifs": ['
        + ",\n  ".join(vif_records)
        + '],\n "routes": [\n'
        + ",\n".join(route_records)
        + "\n]}\n"
    )


def journal_route(record: str) -> str:
    return f'{{"route": {record}}}'


def journal_unroute(key: RouteKey) -> str:
    source, group = key.texts
    input = f', "input": {_json_string(key.input)}' if key.input else ""
    return (
        f'{{"unroute": {{"source": "{source}", "group": "{group}", "table": {key.table}'
        f"{input}}}}}"
    )


def journal_vif(record: str) -> str:
    return f'{{"vif": {record}}}'


def journal_unvif(family: Family, table: int, interface: str) -> str:
    return (
        f'{{"unvif": {{"interface": {_json_string(interface)}, "family": "{family}", '
        f'"table": {table}}}}}'
    )


# -- reading ----------------------------------------------------------------------------
def parse(text: str, journal: str = "", journal_name: str = "journal") -> SavedState:
    """Parse and validate a state file's text, then replay its journal's complete lines
    on top; raises ValueError or MfcError. A torn last journal line (no newline: the
    write never completed, so the change was never acknowledged) is ignored."""
    with gc_paused():  # many objects, no cycles (gcpause.py)
        return _parse(text, journal, journal_name)


def _parse(text: str, journal: str, journal_name: str) -> SavedState:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema version {schema!r} is not supported (this is {SCHEMA_VERSION})")
    loader = _Loader()
    loader.snapshot(_list(data, "routes"), _list(data, "vifs"))
    loader.joins = parse_joins(_list(data, "joins"))  # absent in files before joins
    if journal:
        loader.replay(journal, journal_name)
    loader.check_vif_limit()
    return SavedState(
        tuple(loader.routes.values()), tuple(loader.vifs.values()), tuple(loader.joins.values())
    )


def _list(data: dict, name: str) -> list:
    value = data.get(name, [])
    if type(value) is not list:
        raise ValueError(f"state: field {name!r} must be a list, not {value!r}")
    return value


def _located(exc: ValueError | MfcError, where: str) -> ValueError:
    """The error `exc`, its message prefixed with where it was found."""
    detail = exc.message if isinstance(exc, MfcError) else str(exc)
    return ValueError(f"{where}: {detail}")


Shape = tuple[str, tuple[str, ...]]  # a route's (input, outputs)


class _Loader:
    """The routes and VIFs of one state file and its journal, as they are read."""

    def __init__(self) -> None:
        self.routes: dict[RouteKey, Route] = {}
        self.vifs: dict[VifKey, VifConfig] = {}
        self.joins: dict[JoinKey, Join] = {}
        # Each distinct (input, outputs) is checked once and shared by its routes (a few
        # serve thousands), and so is each (group, table): the memos live as long as
        # this one reading.
        self._shapes: dict[tuple[Any, tuple[Any, ...]], Shape] = {}
        self._groups: dict[tuple[Any, Any], RouteKey] = {}  # -> the key with any source

    def snapshot(self, routes: list, vifs: list) -> None:
        n = 0
        try:
            for n, entry in enumerate(routes, 1):  # noqa: B007 (n: in the message below)
                route = self.route(entry)
                if self.routes.setdefault(route.key, route) is not route:
                    raise ValueError(f"route {route.key} appears twice")
        except (ValueError, MfcError) as exc:
            raise _located(exc, f"route #{n}") from None
        try:
            for n, entry in enumerate(vifs, 1):  # noqa: B007 (as above)
                config = self.vif(entry)
                self.vifs[config.key] = config
        except (ValueError, MfcError) as exc:
            raise _located(exc, f"VIF #{n}") from None

    def route(self, entry: object) -> Route:
        entry = _object(entry)
        source, group = entry.get("source", "*"), entry.get("group", "")
        base = self._base(group, entry.get("table", 0))  # a bad group is named first
        outputs = entry.get("outputs")
        if type(outputs) is not list:
            raise ValueError(f"field 'outputs' must be a list of interface names, not {outputs!r}")
        given = (entry.get("input"), tuple(outputs))
        if base is not None and type(source) is str:
            packed = self._host(source, base)
            if packed is not None:  # the usual route: an exact (S,G) of a host source
                shape = self._shape(base, given)
                route = host_route(base, packed, shape[0], shape[1])
                if route is not None:
                    return route
        key = self.key(entry)
        shape = self._shape(key, given)
        return Route(key, shape[0], shape[1])

    def _shape(self, key: RouteKey, given: tuple[Any, tuple[Any, ...]]) -> Shape:
        try:
            return self._shapes[given]
        except KeyError:
            shape = self._shapes[given] = _check_shape(key, given)
            return shape
        except TypeError:  # an unhashable name: not a string
            return _check_shape(key, given)

    def _base(self, group: object, table: object) -> RouteKey | None:
        """The key of (any source, group) in `table`, read once per pair; None when it
        is not text (make_route_key names the problem)."""
        try:
            return self._groups[(group, table)]
        except KeyError:
            base = self._groups[(group, table)] = make_route_key("*", group, table)  # type: ignore[arg-type]
            return base
        except TypeError:  # unhashable: not text
            return None

    @staticmethod
    def _host(source: str, base: RouteKey) -> bytes | None:
        """A host source's packed address (one inet_pton), else None."""
        if "/" in source or source in ("", "*"):
            return None
        try:
            return inet_pton(AF_INET if len(base.sg[1]) == 4 else AF_INET6, source)
        except (OSError, ValueError):
            return None

    def key(self, entry: dict) -> RouteKey:
        """The route key of an entry: make_route_key's, with the group read once per
        (group, table) and a host source read with one inet_pton (anything else, and
        every error, goes through make_route_key)."""
        source, group = entry.get("source", "*"), entry.get("group", "")
        table = entry.get("table", 0)
        base = self._base(group, table)
        if base is None:
            return make_route_key(source, group, table)
        if type(source) is str:
            packed = self._host(source, base)
            if packed is not None and any(packed):  # not the unspecified address
                return RouteKey(base.table, (packed, base.sg[1]), 8 * len(packed),
                                base.group_len)  # fmt: skip
        return make_route_key(source, group, table)

    def unroute(self, entry: dict) -> None:
        """Remove a route; an entry without "input" (written before templates had one
        per input) removes every template of its addresses."""
        key = self.key(entry)
        input = entry.get("input", "")
        if type(input) is not str:
            raise ValueError(f"field 'input' must be an interface name, not {input!r}")
        if input or not key.is_template:
            self.routes.pop(key.with_input(input), None)
            return
        for gone in [other for other in self.routes if other.without_input() == key]:
            del self.routes[gone]

    @staticmethod
    def vif(entry: object) -> VifConfig:
        entry = _object(entry)
        config = VifConfig(
            _field(entry, "interface", str),
            Family.parse(_field(entry, "family", str)),
            _field(entry, "table", int, 0),
            _field(entry, "ttl_threshold", int, 1),
            mrdisc=_field(entry, "mrdisc", bool, False),
        )
        check_vif(config)
        return config

    @staticmethod
    def vif_key(entry: object) -> VifKey:
        entry = _object(entry)
        family = Family.parse(_field(entry, "family", str))
        return VifKey(family, _field(entry, "table", int), _field(entry, "interface", str))

    def replay(self, journal: str, name: str) -> None:
        """Apply the journal's lines (each one change, idempotent)."""
        lines = journal.split("\n")
        torn = lines.pop()  # "" when the journal ends with a complete line
        if torn:
            log.warning(
                "%s: ignoring a torn last line (%d bytes): its change was never acknowledged",
                name,
                len(torn),
            )
        for n, line in enumerate(lines, 1):
            try:
                change = json.loads(line)
                if type(change) is not list:
                    raise ValueError("it is not a list of changes")
                for entry in change:
                    self._apply(entry)
            except (ValueError, MfcError) as exc:
                raise _located(exc, f"{name} line {n}") from None

    def _apply(self, entry: object) -> None:
        if type(entry) is not dict or len(entry) != 1:
            raise ValueError("it holds something that is not a journal entry")
        ((op, value),) = entry.items()
        if op == "route":
            route = self.route(value)
            self.routes[route.key] = route
        elif op == "unroute":
            self.unroute(_object(value))
        elif op == "vif":
            config = self.vif(value)
            self.vifs[config.key] = config
        elif op == "unvif":
            self.vifs.pop(self.vif_key(value), None)
        elif op in ("join", "unjoin"):
            replay_join_entry(op, value, "journal", self.joins)
        else:
            raise ValueError(f"unknown journal operation {op!r}")

    def check_vif_limit(self) -> None:
        """Refuse a state that needs more VIFs in a table than the kernel allows."""
        shapes = {  # by the group's size, not the (slower) family property
            (len(r.key.sg[1]), r.key.table, r.input, r.outputs) for r in self.routes.values()
        }
        names: dict[tuple[Family, int], set[str]] = {}
        for size, table, input, outputs in shapes:
            used = names.setdefault((FAMILY_OF_SIZE[size], table), set())
            used.add(input)
            used.update(outputs)
        for vif in self.vifs:
            names.setdefault((vif.family, vif.table), set()).add(vif.interface)
        for (family, table), used in names.items():
            if len(used) > MAX_VIFS:
                raise ValueError(
                    f"{family} table {table} uses {len(used)} interfaces; the kernel allows "
                    f"{MAX_VIFS}"
                )


def _object(value: object) -> dict:
    if type(value) is not dict:
        raise ValueError("it is not a JSON object")
    return value


def _check_shape(key: RouteKey, shape: tuple[Any, tuple[Any, ...]]) -> Shape:
    input, outputs = shape
    if type(input) is not str:
        raise ValueError(f"field 'input' must be an interface name, not {input!r}")
    if not all(type(name) is str for name in outputs):
        raise ValueError("outputs must be interface names")
    check_interfaces(key, input, outputs)
    return input, outputs


def _field(entry: dict, name: str, kind: type[T], default: object = None) -> T:
    value = entry.get(name, default)
    if type(value) is not kind:  # bool is not an int here
        raise ValueError(f"field {name!r} must be a {kind.__name__}, not {value!r}")
    return value


class StateFile:
    """The snapshot (`state.json`) and its append-only journal (`state.json.journal`,
    one JSON line per change, fdatasync'ed before the change is acknowledged). A
    snapshot write (compaction) empties the journal; replaying a journal line twice
    is harmless, so a crash between the two loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.journal_path = self.path.with_name(f"{self.path.name}.journal")
        self.journal_entries = 0  # lines in the journal since the last snapshot
        self._fd: int | None = None
        self._size = 0

    def load(self) -> SavedState:
        """The saved state (snapshot + journal); absent files are an empty state.
        Raises StateFileError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"state file {self.path} cannot be read: {exc}") from None
        try:
            journal = self.journal_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            journal = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"state file journal {self.journal_path} cannot be read: "
                                 f"{exc}") from None  # fmt: skip
        self.journal_entries = journal.count("\n")  # lines; the engine compacts at start
        if text is None and not journal:
            return SavedState()
        try:
            return parse(text if text is not None else _EMPTY, journal, str(self.journal_path))
        except (ValueError, MfcError) as exc:
            detail = exc.message if isinstance(exc, MfcError) else str(exc)
            raise StateFileError(f"state file {self.path} is not valid: {detail}") from None

    def set_aside(self) -> Path:
        """Rename a bad state file (and its journal) out of the way (never overwrite or
        delete them); returns the new name of the state file."""
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists() or aside.with_name(f"{aside.name}.journal").exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        if self.path.exists() or not self.journal_path.exists():
            os.rename(self.path, aside)
        if self.journal_path.exists():
            os.rename(self.journal_path, aside.with_name(f"{aside.name}.journal"))
        _fsync_dir(self.path.parent)
        return aside

    def append(self, entries: list[str]) -> None:
        """Append one change (its entries on one line: a torn line is dropped whole, so
        a batch stays all-or-nothing) durably (write + fdatasync); raises
        StateFileError and leaves the journal as it was."""
        data = ("[" + ", ".join(entries) + "]\n").encode()
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(
                    self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
                self._size = os.lseek(self._fd, 0, os.SEEK_END)
                _fsync_dir(self.path.parent)  # the journal's name must survive a crash
            fd = self._fd
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

    def _write_failed(self, exc: OSError) -> StateFileError:
        return StateFileError(
            f"cannot write state file {self.path}: {exc.strerror or exc}; "
            "the change was not applied"
        )

    def write(self, text: str) -> None:
        """Replace the snapshot atomically and durably, then empty the journal; raises
        StateFileError."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.tmp-{os.getpid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                data = text.encode()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            _fsync_dir(directory)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise self._write_failed(exc) from None
        self._truncate_journal()

    def _truncate_journal(self) -> None:
        """After a snapshot: the journal's changes are in it (a failure here is harmless:
        replaying them again changes nothing)."""
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)
            elif self.journal_path.exists():
                os.truncate(self.journal_path, 0)
        except OSError as exc:
            log.warning("cannot empty the journal %s: %s", self.journal_path, exc)
            return
        self._size = 0
        self.journal_entries = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_EMPTY = f'{{"schema": {SCHEMA_VERSION}}}'


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
