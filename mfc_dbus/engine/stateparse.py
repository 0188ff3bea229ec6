"""Reading the state file: a snapshot's text and its journals' lines (the format:
staterecords.py), validated entry by entry, each error located ("route #2: ...",
"state.json.journal line 5: ...")."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
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
from .staterecords import SCHEMA_VERSION
from .validate import check_interfaces, check_vif

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SavedState:
    routes: tuple[Route, ...] = ()
    vifs: tuple[VifConfig, ...] = ()
    joins: tuple[Join, ...] = ()


def parse(
    text: str,
    journal: str = "",
    journal_name: str = "journal",
    earlier: Sequence[tuple[str, str]] = (),
) -> SavedState:
    """Parse and validate a state file's text, then replay the complete lines of its
    journals on top: `earlier` ((name, text) of the journals a compaction set aside,
    oldest first), then `journal`. Raises ValueError or MfcError. A torn last line (no
    newline: the write never completed, so the change was never acknowledged) is
    ignored."""
    with gc_paused():  # many objects, no cycles (gcpause.py)
        return _parse(text, [*earlier, (journal_name, journal)])


def _parse(text: str, journals: list[tuple[str, str]]) -> SavedState:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ValueError(f"schema version {schema!r} is not supported (this is {SCHEMA_VERSION})")
    loader = _Loader()
    loader.snapshot(_list(data, "routes"), _list(data, "vifs"))
    loader.joins = parse_joins(_list(data, "joins"))  # absent in files before joins
    for name, journal in journals:
        if journal:
            loader.replay(journal, name)
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
