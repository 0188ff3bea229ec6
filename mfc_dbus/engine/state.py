"""The persisted state file: persistent routes and explicit VIF settings.

Format (JSON, one route per line so that a person can read and edit it)::

    {"schema": 1, "generator": "mfc-dbus",
     "vifs": [{"interface": "eth0", "family": "ipv4", "table": 0, "ttl_threshold": 1}],
     "routes": [
    {"source": "*", "group": "233.252.0.1", "input": "eth0", "outputs": ["eth1"]},
    {"source": "10.1.0.0/16", "group": "ff3e::1", "table": 10, "input": "eth0", ...}
     ]}

Snapshot writes are atomic (temporary file in the same directory, fsync, rename, fsync
of the directory): a crash leaves either the old or the new file, never a mix. Each
route's JSON text is produced once and cached by the engine, so a write is a string
join. Between snapshots each change is appended to `state.json.journal` (JSON lines,
fdatasync'ed before the call returns): a call costs one small append instead of a
rewrite of every route. Start-up reads the snapshot and replays the journal.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from socket import AF_INET, AF_INET6, inet_ntoa, inet_pton

from ..errors import MfcError
from ..model import (
    MAX_VIFS,
    Family,
    Route,
    RouteKey,
    VifConfig,
    format_group,
    make_route_key,
    normalize_table,
    parse_group,
)
from .joins import Join
from .joinstate import parse_joins, replay_join_entry
from .validate import check_route, check_vif

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


class StateFileError(MfcError):
    """The state file cannot be read, parsed or written."""


@dataclass(frozen=True)
class SavedState:
    routes: tuple[Route, ...] = ()
    vifs: tuple[VifConfig, ...] = ()
    joins: tuple[Join, ...] = ()


_tail_text: dict[tuple, tuple[object, str]] = {}
_name_text: dict[str, str] = {}


def _json_name(name: str) -> str:
    text = _name_text.get(name)
    if text is None:
        text = _name_text[name] = json.dumps(name)
    return text


def route_record(route: Route) -> str:
    """The JSON text of one persistent route, as written in the state file."""
    key = route.key
    texts = key.__dict__.get("texts")
    if texts is not None:
        source = texts[0]
    elif key.family is Family.IPV4 and not key.is_template:
        source = inet_ntoa(key.sg[0])  # what key.texts would say, without storing it
    else:
        source = key.texts[0]
    # Everything after the source, by (group, table, input, outputs): routes share a few.
    # The group by identity (parsed groups are shared objects; hashing a network is
    # slow): the entry keeps its group alive, so the id cannot be reused meanwhile.
    shape = (id(key.group), key.table, route.input, route.outputs)
    cached = _tail_text.get(shape)
    if cached is None or cached[0] is not key.group:
        cached = _tail_text[shape] = (key.group, _tail(route))
        if len(_tail_text) > 4096:
            _tail_text.clear()
    return f'{{"source": "{source}"{cached[1]}'


def _tail(route: Route) -> str:
    key = route.key
    table = f', "table": {key.table}' if key.table else ""
    outputs = ", ".join(map(_json_name, route.outputs))
    return (
        f', "group": "{format_group(key.group)}"{table}, '
        f'"input": {_json_name(route.input)}, "outputs": [{outputs}]}}'
    )


def vif_record(config: VifConfig) -> str:
    return json.dumps(
        {
            "interface": config.interface,
            "family": str(config.family),
            "table": config.table,
            "ttl_threshold": config.ttl_threshold,
        }
    )


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


def _field(entry: dict, name: str, kind: type, where: str, default: object = None) -> object:
    value = entry.get(name, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: field {name!r} must be a {kind.__name__}, not {value!r}")
    return value


def parse(text: str, journal: str = "", journal_name: str = "journal") -> SavedState:
    """Parse and validate a state file's text, then replay its journal's complete lines
    on top; raises ValueError or MfcError. A torn last journal line (no newline: the
    write never completed, so the change was never acknowledged) is ignored."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema version {schema!r} is not supported (this is {SCHEMA_VERSION})")
    routes: dict = {}
    groups: dict[str, object] = {}
    for n, entry in enumerate(_field(data, "routes", list, "state", [])):
        route = _parse_route(entry, f"route #{n + 1}", groups)
        if route.key in routes:
            raise ValueError(f"route #{n + 1}: route {route.key} appears twice")
        routes[route.key] = route
    vifs: dict = {}
    for n, entry in enumerate(_field(data, "vifs", list, "state", [])):
        config = _parse_vif(entry, f"VIF #{n + 1}")
        vifs[(config.family, config.table, config.interface)] = config
    joins = parse_joins(data.get("joins", []))
    if journal:
        _replay(journal, journal_name, routes, vifs, groups, joins)
    names: dict[tuple[Family, int], set[str]] = {}
    for route in routes.values():
        names.setdefault((route.key.family, route.key.table), set()).update(route.interfaces)
    for family, table, name in vifs:
        names.setdefault((family, table), set()).add(name)
    for (family, table), used in names.items():
        if len(used) > MAX_VIFS:
            raise ValueError(
                f"{family} table {table} uses {len(used)} interfaces; the kernel allows "
                f"{MAX_VIFS}"
            )
    return SavedState(tuple(routes.values()), tuple(vifs.values()), tuple(joins.values()))


def _parse_key(entry: object, where: str, groups: dict) -> RouteKey:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a JSON object")
    return _route_key(
        _field(entry, "source", str, where, "*"),
        _field(entry, "group", str, where),
        _field(entry, "table", int, where, 0),
        groups,
    )


def _parse_route(entry: object, where: str, groups: dict) -> Route:
    key = _parse_key(entry, where, groups)
    outputs = _field(entry, "outputs", list, where)
    if not all(isinstance(name, str) for name in outputs):
        raise ValueError(f"{where}: outputs must be interface names")
    route = Route(key, _field(entry, "input", str, where), tuple(outputs))
    check_route(route)
    return route


def _parse_vif(entry: object, where: str) -> VifConfig:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a JSON object")
    config = VifConfig(
        _field(entry, "interface", str, where),
        Family.parse(_field(entry, "family", str, where)),
        _field(entry, "table", int, where, 0),
        _field(entry, "ttl_threshold", int, where, 1),
    )
    check_vif(config)
    return config


def _replay(journal: str, name: str, routes: dict, vifs: dict, groups: dict, joins: dict) -> None:
    """Apply the journal's lines (each one change, idempotent) to routes and vifs."""
    lines = journal.split("\n")
    torn = lines.pop()  # "" when the journal ends with a complete line
    if torn:
        log.warning(
            "%s: ignoring a torn last line (%d bytes): its change was never acknowledged",
            name,
            len(torn),
        )
    for n, line in enumerate(lines):
        where = f"{name} line {n + 1}"
        try:
            group = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where} is not valid JSON ({exc})") from None
        if not isinstance(group, list):
            raise ValueError(f"{where} is not a list of changes")
        for entry in group:
            _replay_entry(entry, where, routes, vifs, groups, joins)


def _replay_entry(
    entry: object, where: str, routes: dict, vifs: dict, groups: dict, joins: dict
) -> None:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ValueError(f"{where} holds something that is not a journal entry")
    ((op, value),) = entry.items()
    if op == "route":
        route = _parse_route(value, where, groups)
        routes[route.key] = route
    elif op == "unroute":
        routes.pop(_parse_key(value, where, groups), None)
    elif op == "vif":
        config = _parse_vif(value, where)
        vifs[(config.family, config.table, config.interface)] = config
    elif op == "unvif":
        if not isinstance(value, dict):
            raise ValueError(f"{where} is not a JSON object")
        family = Family.parse(_field(value, "family", str, where))
        table = _field(value, "table", int, where)
        vifs.pop((family, table, _field(value, "interface", str, where)), None)
    elif op in ("join", "unjoin"):
        replay_join_entry(op, value, where, joins)
    else:
        raise ValueError(f"{where}: unknown journal operation {op!r}")


def journal_route(record: str) -> str:
    return f'{{"route": {record}}}'


def journal_unroute(key: RouteKey) -> str:
    source, group = key.texts
    return f'{{"unroute": {{"source": "{source}", "group": "{group}", ' f'"table": {key.table}}}}}'


def journal_vif(record: str) -> str:
    return f'{{"vif": {record}}}'


def journal_unvif(family: Family, table: int, interface: str) -> str:
    return (
        f'{{"unvif": {{"interface": {_json_name(interface)}, "family": "{family}", '
        f'"table": {table}}}}}'
    )


def _route_key(source: str, group: str, table: int, groups: dict) -> RouteKey:
    """make_route_key, faster for the common case of a state file: host sources
    (inet_pton instead of ipaddress's parser) and groups that repeat (cached)."""
    if "/" in source or source.strip() in ("", "*"):
        return make_route_key(source, group, table)
    host = _host(source)
    if host is None:
        return make_route_key(source, group, table)  # raises with the usual message
    family, network_class, packed = host
    group_net = groups.get(group)
    if group_net is None:
        group_net = groups[group] = parse_group(group)
    if group_net.version != network_class._version or packed[0] >= (
        224 if network_class._version == 4 else 255
    ):
        return make_route_key(source, group, table)  # family mix or multicast: raises
    source_net = network_class((int.from_bytes(packed, "big"), network_class._max_prefixlen))
    return RouteKey(family, normalize_table(table, family), source_net, group_net)


_HOSTS = (
    (Family.IPV4, AF_INET, ipaddress.IPv4Network),
    (Family.IPV6, AF_INET6, ipaddress.IPv6Network),
)


def _host(text: str) -> tuple[Family, type, bytes] | None:
    for family, address_family, network_class in _HOSTS:
        try:
            return family, network_class, inet_pton(address_family, text)
        except OSError:
            continue
    return None


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
