"""The runtime record: what the state file does not keep but a restart must not lose.

Kept under /run (systemd's RuntimeDirectory=, preserved across restarts, gone at
reboot and at `systemctl stop`): the non-persistent routes and joins (persistent=false,
and leases with their holder's bus name); the kernel VIF slots in use, so that a
restarted service that adopts the kernel's table knows which interface each slot is;
and the memberships each group-join socket holds (by its FDNAME), so that it knows
what to ask the adopted join sockets about (kernel/membership.py). Rewritten whole (a
temporary file renamed over it) after every change that touches it; tmpfs makes that
cheap.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MfcError
from ..kernel.membership import Membership
from ..model import Family, Route, RouteKey, make_route_key
from .change import RouteChange
from .joins import Join, MembershipKernel
from .joinstate import join_entry, parse_join_key
from .table import Table
from .validate import check_route

log = logging.getLogger(__name__)

SCHEMA = 1
LiveVif = tuple[str, int, int]  # (interface name, ifindex, TTL threshold)


@dataclass
class RuntimeRecord:
    routes: list[Route] = field(default_factory=list)
    vifs: dict[tuple[Family, int], dict[int, LiveVif]] = field(default_factory=dict)
    join_sockets: dict[str, list[Membership]] = field(default_factory=dict)  # by FDNAME
    joins: list[Join] = field(default_factory=list)  # the non-persistent ones


def render(
    routes: list[Route],
    vifs: dict[tuple[Family, int], dict[int, LiveVif]],
    join_sockets: dict[str, list[Membership]] | None = None,
    joins: list[Join] | None = None,
) -> str:
    route_items = [
        {
            "source": route.key.texts[0],
            "group": route.key.texts[1],
            "table": route.key.table,
            "input": route.input,
            "outputs": list(route.outputs),
            "owner": route.owner,
        }
        for route in routes
    ]
    vif_items = [
        {"family": family.value, "table": table, "slot": slot, "interface": name,
         "ifindex": ifindex, "ttl_threshold": ttl}
        for (family, table), slots in sorted(vifs.items(), key=lambda i: (i[0][0].value, i[0][1]))
        for slot, (name, ifindex, ttl) in sorted(slots.items())
    ]  # fmt: skip
    join_items = [
        {"name": name, "memberships": [
            [m.ifindex, str(m.group), None if m.source is None else str(m.source)]
            for m in sorted(held, key=str)]}
        for name, held in sorted((join_sockets or {}).items())
    ]  # fmt: skip
    group_items = [join_entry(join.key) | {"owner": join.owner} for join in joins or ()]
    record = {"schema": SCHEMA, "routes": route_items, "vifs": vif_items,
              "join_sockets": join_items, "joins": group_items}  # fmt: skip
    return json.dumps(record) + "\n"


def parse(text: str) -> RuntimeRecord:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"not a schema {SCHEMA} runtime record")
    record = RuntimeRecord()
    for item in data.get("routes", []):
        key = make_route_key(item["source"], item["group"], int(item.get("table", 0)))
        owner = item.get("owner")
        route = Route(key, str(item["input"]), tuple(map(str, item["outputs"])), False,
                      str(owner) if owner else None)  # fmt: skip
        check_route(route)
        record.routes.append(route)
    for item in data.get("vifs", []):
        slots = record.vifs.setdefault((Family.parse(item["family"]), int(item["table"])), {})
        slots[int(item["slot"])] = (
            str(item["interface"]),
            int(item["ifindex"]),
            int(item["ttl_threshold"]),
        )
    for item in data.get("join_sockets", []):
        record.join_sockets[str(item["name"])] = [
            Membership(int(ifindex), ipaddress.ip_address(group),
                       None if source is None else ipaddress.ip_address(source))
            for ifindex, group, source in item["memberships"]
        ]  # fmt: skip
    for item in data.get("joins", []):
        owner = item.get("owner")
        join_key = parse_join_key({k: v for k, v in item.items() if k != "owner"}, "a join")
        record.joins.append(Join(join_key, False, str(owner) if owner else None))
    return record


class RuntimeFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: str | None = None

    def load(self) -> RuntimeRecord:
        """The record left by the previous run; empty (and logged) if absent or bad."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return RuntimeRecord()
        except OSError as exc:
            log.warning("cannot read the runtime record %s: %s", self.path, exc.strerror)
            return RuntimeRecord()
        try:
            return parse(text)
        except (ValueError, KeyError, TypeError, MfcError) as exc:
            log.warning("ignoring the runtime record %s: %s", self.path, exc)
            return RuntimeRecord()

    def write(self, text: str) -> None:
        if text == self._written:
            return
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            temporary.write_text(text)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("cannot write the runtime record %s: %s", self.path, exc.strerror)
            return
        self._written = text

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._written = None


class RuntimeState:
    """This process's side of the runtime record: the non-persistent routes, the live
    VIFs and what the join sockets hold, written again whenever one changed."""

    def __init__(self, path: Path | None, memberships: MembershipKernel) -> None:
        self._file = RuntimeFile(path) if path is not None else None
        self._memberships = memberships
        self.previous = RuntimeRecord()  # what the previous process left
        self._transient: dict[RouteKey, Route] = {}
        self._joins: list[Join] = []  # the non-persistent joins
        self._version = 0  # counts changes of the non-persistent routes
        self._written = -1  # the version (with the tables' live versions) last written

    def load(self) -> None:
        if self._file is not None:
            self.previous = self._file.load()

    def track(self, changes: list[RouteChange]) -> None:
        if self._file is None:
            return
        transient = self._transient
        for old, new in changes:
            if old is not None and not old.persistent:
                transient.pop(old.key, None)
                self._version += 1
            if new is not None and not new.persistent:
                transient[new.key] = new
                self._version += 1

    def track_joins(self, joins: Iterable[Join]) -> None:
        """The joins now wanted: keep the non-persistent ones (a configuration file's
        come back from the file)."""
        transient = [j for j in joins if (not j.persistent or j.owner) and not j.origin]
        if transient != self._joins:
            self._joins = transient
            self._version += 1

    def save(self, tables: Iterable[Table]) -> None:
        """Rewrite the record if the non-persistent routes or a live VIF changed."""
        if self._file is None:
            return
        tables = list(tables)
        version = (
            self._version + sum(table.live_version for table in tables) + self._memberships.version
        )
        if version == self._written:
            return
        self._written = version
        vifs = {
            (table.family, table.table): dict(table.live_vifs)
            for table in tables
            if table.live_vifs
        }
        self._file.write(
            render(
                list(self._transient.values()),
                vifs,
                self._memberships.holdings(),
                self._joins,
            )
        )

    def remove(self) -> None:
        """An explicit stop: nothing carries over to the next process."""
        if self._file is not None:
            self._file.remove()
