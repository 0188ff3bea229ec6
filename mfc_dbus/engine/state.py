"""The persisted state file: persistent routes and explicit VIF settings.

Format (JSON, one route per line so that a person can read and edit it)::

    {"schema": 1, "generator": "mfc-dbus",
     "vifs": [{"interface": "eth0", "family": "ipv4", "table": 0, "ttl_threshold": 1}],
     "routes": [
    {"source": "*", "group": "233.252.0.1", "input": "eth0", "outputs": ["eth1"]},
    {"source": "10.1.0.0/16", "group": "ff3e::1", "table": 10, "input": "eth0", ...}
     ]}

Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the
directory): a crash leaves either the old or the new file, never a mix. Each route's
JSON text is produced once and cached by the engine, so a write is a string join.
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
    IPNetwork,
    Route,
    RouteKey,
    VifConfig,
    format_group,
    format_source,
    make_route_key,
    normalize_table,
    parse_group,
)
from .validate import check_route, check_vif

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


class StateFileError(MfcError):
    """The state file cannot be read, parsed or written."""


@dataclass(frozen=True)
class SavedState:
    routes: tuple[Route, ...] = ()
    vifs: tuple[VifConfig, ...] = ()


_group_text: dict[int, tuple[object, str]] = {}
_name_text: dict[str, str] = {}


def _network_text(network: IPNetwork | None) -> str:
    if network is not None and network.version == 4 and network.prefixlen == 32:
        return inet_ntoa(int(network.network_address).to_bytes(4, "big"))  # str() is slow
    return format_source(network)


def _json_name(name: str) -> str:
    text = _name_text.get(name)
    if text is None:
        text = _name_text[name] = json.dumps(name)
    return text


def route_record(route: Route) -> str:
    """The JSON text of one persistent route, as written in the state file."""
    key = route.key
    # By identity (parsed groups are shared objects; hashing a network is slow): the
    # entry keeps its network alive, so the id cannot be reused while it is a key.
    cached = _group_text.get(id(key.group))
    if cached is not None and cached[0] is key.group:
        group = cached[1]
    else:
        if len(_group_text) > 4096:
            _group_text.clear()
        group = format_group(key.group)
        _group_text[id(key.group)] = (key.group, group)
    table = f', "table": {key.table}' if key.table else ""
    outputs = ", ".join([_json_name(name) for name in route.outputs])
    return (
        f'{{"source": "{_network_text(key.source)}", "group": "{group}"'
        f'{table}, "input": {_json_name(route.input)}, "outputs": [{outputs}]}}'
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


def render(route_records: list[str], vif_records: list[str]) -> str:
    return (
        f'{{"schema": {SCHEMA_VERSION}, "generator": "mfc-dbus",\n "vifs": ['
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


def parse(text: str) -> SavedState:
    """Parse and validate a state file's text; raises ValueError or MfcError."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema version {schema!r} is not supported (this is {SCHEMA_VERSION})")
    routes: dict = {}
    groups: dict[str, object] = {}
    for n, entry in enumerate(_field(data, "routes", list, "state", [])):
        where = f"route #{n + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not a JSON object")
        key = _route_key(
            _field(entry, "source", str, where, "*"),
            _field(entry, "group", str, where),
            _field(entry, "table", int, where, 0),
            groups,
        )
        outputs = _field(entry, "outputs", list, where)
        if not all(isinstance(name, str) for name in outputs):
            raise ValueError(f"{where}: outputs must be interface names")
        route = Route(key, _field(entry, "input", str, where), tuple(outputs))
        check_route(route)
        if key in routes:
            raise ValueError(f"{where}: route {key} appears twice")
        routes[key] = route
    vifs: dict = {}
    for n, entry in enumerate(_field(data, "vifs", list, "state", [])):
        where = f"VIF #{n + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not a JSON object")
        config = VifConfig(
            _field(entry, "interface", str, where),
            Family.parse(_field(entry, "family", str, where)),
            _field(entry, "table", int, where, 0),
            _field(entry, "ttl_threshold", int, where, 1),
        )
        check_vif(config)
        vifs[(config.family, config.table, config.interface)] = config
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
    return SavedState(tuple(routes.values()), tuple(vifs.values()))


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
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> SavedState:
        """The saved state; an absent file is an empty state. Raises StateFileError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SavedState()
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(f"state file {self.path} cannot be read: {exc}") from None
        try:
            return parse(text)
        except (ValueError, MfcError) as exc:
            detail = exc.message if isinstance(exc, MfcError) else str(exc)
            raise StateFileError(f"state file {self.path} is not valid: {detail}") from None

    def set_aside(self) -> Path:
        """Rename a bad state file out of the way (never overwrite or delete it)."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.rename(self.path, aside)
        _fsync_dir(self.path.parent)
        return aside

    def write(self, text: str) -> None:
        """Replace the file atomically and durably; raises StateFileError."""
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
            raise StateFileError(
                f"cannot write state file {self.path}: {exc.strerror or exc}; "
                "the change was not applied"
            ) from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
