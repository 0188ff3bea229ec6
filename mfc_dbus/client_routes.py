"""The client's route calls (AddRoute, AddRoutes, RemoveRoute, AddOutputs,
RemoveOutputs, Flush, ListRoutes in pages) and the route values they take and return;
MfcClient (client.py) has these methods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

from .client_bus import CONTRACT, BusClient
from .client_options import make_options
from .errors import LimitExceeded
from .gcpause import gc_paused
from .names import PAGE_NEXT
from .wiresize import SYSTEM_BUS_MESSAGE_LIMIT, RowSizer, fits, mib, rows_size

PAGE_SIZE = 10_000  # ListRoutes rows per call: about 3 MiB, well inside a bus message
_BATCH_ROW = RowSizer(CONTRACT.methods["AddRoutes"].arg("routes").keys)


@dataclass(frozen=True)
class RouteSpec:
    """One route to add (AddRoute / an AddRoutes element)."""

    source: str
    group: str
    input: str
    outputs: tuple[str, ...]
    persistent: bool | None = None
    lease: bool | None = None
    table: int | None = None
    replace: bool | None = None  # an exact (S,G) may move to another input

    def options(self) -> dict[str, Variant]:
        return make_options(
            persistent=self.persistent, lease=self.lease, table=self.table, replace=self.replace
        )


@dataclass(frozen=True)
class RouteInfo:
    """One element of ListRoutes."""

    source: str
    group: str
    input: str
    outputs: tuple[str, ...]
    state: str = "installed"
    family: str = ""
    table: int = 0
    persistent: bool = True
    owner: str | None = None
    missing: tuple[str, ...] = ()
    packets: int = 0
    bytes: int = 0
    wrong_if: int = 0
    origin: str | None = None  # FILE:LINE of a configuration file's route
    next: str | None = None  # on a page's last row: the resume token of the next page

    @classmethod
    def from_dbus(cls, item: Sequence[Any]) -> RouteInfo:
        source, group, input_, outputs, extra = item
        info = {key: variant.value for key, variant in extra.items()}  # flat values only
        get = info.get  # values of the contract's types; absent keys: the defaults
        return cls(
            source or "*", group, input_, tuple(outputs), get("state", "installed"),
            get("family") or ("ipv6" if ":" in group else "ipv4"), get("table", 0),
            get("persistent", True), get("owner") or None, tuple(get("missing", ())),
            get("packets", 0), get("bytes", 0), get("wrong_if", 0), get("origin") or None,
            get(PAGE_NEXT) or None,
        )  # fmt: skip


def _page_next(items: Sequence[Any]) -> str | None:
    """The resume token in a ListRoutes page's last row; None on the last page."""
    if not items:
        return None
    token = items[-1][4].get(PAGE_NEXT)
    return None if token is None else str(token.value) or None


def check_batch_size(routes: Sequence[Sequence[Any]], limit: int) -> None:
    """LimitExceeded, with the batch size that fits, when an AddRoutes of `routes`
    (as sent) would exceed `limit` bytes: the bus would drop the connection instead. A
    cheap upper bound decides most batches; past it the batch is measured exactly."""
    size = sum(
        _BATCH_ROW.bound((source, group, input_), (outputs,), options)
        for source, group, input_, outputs, options in routes
    )
    if not fits(size, limit):
        size = rows_size(routes)  # the batch options are within HEADER_ALLOWANCE
    if not fits(size, limit):
        most = max(1, len(routes) * (limit - 65536) // size)
        raise LimitExceeded(
            f"AddRoutes: a batch of {len(routes)} routes would take {mib(size)}, more than "
            f"the {mib(limit)} a bus message may hold; split it into batches of at most "
            f"{most} routes (each batch is added all or nothing)"
        )


class RouteMethods(BusClient):
    """The route calls of MfcClient."""

    # The largest message AddRoutes sends (the bus drops a connection sending more).
    message_limit = SYSTEM_BUS_MESSAGE_LIMIT

    async def add_route(
        self,
        source: str,
        group: str,
        input: str,
        outputs: Iterable[str],
        *,
        persistent: bool | None = None,
        lease: bool | None = None,
        table: int | None = None,
        replace: bool | None = None,
    ) -> None:
        """replace: an exact (S,G) that exists from another input moves to `input`."""
        options = make_options(persistent=persistent, lease=lease, table=table, replace=replace)
        await self.invoke("AddRoute", source, group, input, list(outputs), options)

    async def add_routes(
        self, routes: Iterable[RouteSpec], options: Mapping[str, Any] | None = None
    ) -> int:
        """Add many routes at once, all or nothing; returns how many were added."""
        rows = [[r.source, r.group, r.input, list(r.outputs), r.options()] for r in routes]
        check_batch_size(rows, self.message_limit)
        (count,) = await self.invoke("AddRoutes", rows, make_options(**(options or {})))
        return int(count)

    async def remove_route(
        self, source: str, group: str, *, table: int | None = None, input: str | None = None
    ) -> None:
        """input: which of several (*,G) or prefix routes of (source, group) to remove."""
        await self.invoke("RemoveRoute", source, group, make_options(table=table, input=input))

    async def add_outputs(
        self,
        source: str,
        group: str,
        outputs: Iterable[str],
        *,
        table: int | None = None,
        input: str | None = None,
    ) -> list[str]:
        """Add outputs to a route, keeping its others; returns its outputs now."""
        return await self._change_outputs("AddOutputs", source, group, outputs, table, input)

    async def remove_outputs(
        self,
        source: str,
        group: str,
        outputs: Iterable[str],
        *,
        table: int | None = None,
        input: str | None = None,
    ) -> list[str]:
        """Remove outputs of a route (none left: it blocks); returns its outputs now."""
        return await self._change_outputs("RemoveOutputs", source, group, outputs, table, input)

    async def _change_outputs(
        self,
        member: str,
        source: str,
        group: str,
        outputs: Iterable[str],
        table: int | None,
        input: str | None,
    ) -> list[str]:
        options = make_options(table=table, input=input)
        (now,) = await self.invoke(member, source, group, list(outputs), options)
        return list(now)

    async def flush(
        self, *, family: str | None = None, table: int | None = None, learned: bool = False
    ) -> int:
        options = make_options(family=family, table=table, learned=learned or None)
        (removed,) = await self.invoke("Flush", options)
        return int(removed)

    async def list_routes(
        self, *, family: str | None = None, table: int | None = None
    ) -> list[RouteInfo]:
        """Every route, read in pages of PAGE_SIZE."""
        found: list[RouteInfo] = []
        async for page in self.route_pages(family=family, table=table):
            found.extend(page)
        return found

    async def route_pages(
        self, *, family: str | None = None, table: int | None = None, size: int = PAGE_SIZE
    ) -> AsyncIterator[list[RouteInfo]]:
        """The routes, one ListRoutes page of at most `size` at a time, in the service's
        order; a route that exists throughout comes exactly once. The next page is
        asked for as soon as a page arrives, so the service makes it while this one is
        converted and used."""

        def ask(after: str | None) -> asyncio.Task[list[Any]]:
            options = make_options(family=family, table=table, limit=size, after=after)
            return asyncio.ensure_future(self.invoke("ListRoutes", options))

        asked = ask(None)
        try:
            while True:
                (items,) = await asked
                after = _page_next(items)
                if after is not None:
                    asked = ask(after)
                with gc_paused():  # a page is many objects, none in a cycle
                    page = list(map(RouteInfo.from_dbus, items))
                yield page
                if after is None:
                    return
        finally:
            asked.cancel()  # a page asked for that the caller no longer wants
