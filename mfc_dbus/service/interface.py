"""The object /org/mfc/Forwarding1, interface org.mfc.Forwarding1: one handler per
method of the contract.

A handler validates its arguments and returns the change still to be made (a
function); the dispatcher authorizes the call in between (see dispatch.py). A read
(`@public`) returns its result directly. Signals and PropertiesChanged come from the
engine's listener calls, so changes made by upcalls, expiry, hotplug, leases and
Reload are signalled too; they, and each call's audit line, are sent after the reply
(emitter.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbus_fast import Variant

from .. import __version__
from ..contract import Contract
from ..engine.joins import Join
from ..gcpause import gc_paused, gc_paused_if_many
from ..model import Family, Route, VifConfig, VifStatus, make_route_key
from ..model import validate_interface_name as check_ifname
from ..wiresize import SYSTEM_BUS_MESSAGE_LIMIT
from .auth import Call, GuardedEngine, public
from .convert import Wire, vif_index
from .emitter import Emitter
from .groupwire import GroupWire
from .leases import Leases
from .options import option_spec
from .outbox import Outbox

Change = Callable[[], Any]


class Forwarding:
    # The largest reply ListRoutes sends (the bus drops a connection sending more).
    message_limit = SYSTEM_BUS_MESSAGE_LIMIT

    def __init__(self, engine: Any, leases: Leases, contract: Contract) -> None:
        self._raw_engine = engine
        self._engine = GuardedEngine(engine)
        self._leases = leases
        self._wire = wire = Wire(contract)
        self._remove_route_options = option_spec(contract, "RemoveRoute")
        self._outputs_options = option_spec(contract, "AddOutputs")
        self._flush_options = option_spec(contract, "Flush")
        self._route_filter = option_spec(contract, "ListRoutes", "filter")
        self._add_vif_options = option_spec(contract, "AddVif")
        self._remove_vif_options = option_spec(contract, "RemoveVif")
        self._vif_filter = option_spec(contract, "ListVifs", "filter")
        self._groups = GroupWire(contract)
        self._properties: dict[str, Callable[[], Any]] = {
            "Version": lambda: __version__,
            "RouteCount": lambda: engine.route_count,
            "VifCount": lambda: engine.vif_count,
            "GroupCount": lambda: engine.group_count,
            "Families": lambda: [family.value for family in engine.families],
        }
        if set(self._properties) != set(contract.properties):
            raise TypeError(
                f"properties: the contract names {sorted(contract.properties)}, "
                f"the service has {sorted(self._properties)}"
            )
        self.emitter = Emitter(contract, wire, self._counts)
        engine.add_listener(self)

    def attach(self, outbox: Outbox | None) -> None:
        """Send on this connection from now on (None: the bus is away; signals wait)."""
        self.emitter.attach(outbox)

    def drain(self) -> None:
        """Send what is queued now (at shutdown)."""
        self.emitter.drain()

    def hold_signals(self) -> None:
        """Calls are being served: queue their signals and audit lines until
        `send_held`, after their replies."""
        self.emitter.hold()

    def send_held(self) -> None:
        self.emitter.release()

    # -- routes -----------------------------------------------------------------------
    def AddRoute(
        self,
        call: Call,
        source: str,
        group: str,
        input: str,
        outputs: list[str],
        options: dict[str, Variant],
    ) -> Change:
        route = self._wire.route_from_args(
            source, group, input, outputs, options, sender=call.sender, where="AddRoute"
        )
        replace = _wants_replace(options)

        def add() -> None:
            self._engine.add_route(route, counters=False, replace=replace)
            self.emitter.audit(call, lambda: _describe(route))
            if route.owner:
                self._leases.confirm_soon(route.owner)

        return add

    def AddRoutes(self, call: Call, routes: list[Any], options: dict[str, Variant]) -> Change:
        wire = self._wire
        defaults = wire.batch_options.parse(options)
        spec = wire.batch_route_options
        with gc_paused_if_many(len(routes)):  # many objects, no cycles (gcpause.py)
            parsed = [
                wire.route_from_args(
                    *item, sender=call.sender, where=f"AddRoutes route #{n}", spec=spec,
                    defaults=defaults,
                )  # fmt: skip
                for n, item in enumerate(routes)
            ]
        batch_replace = _wants_replace(options)
        replace = {
            route.key
            for route, item in zip(parsed, routes, strict=True)
            if _wants_replace(item[4], batch_replace)
        }

        def add() -> int:
            count = self._engine.add_routes(parsed, replace=replace)
            self.emitter.audit(call, lambda: f"{len(parsed)} routes: {_summary(parsed)}")
            for owner in {route.owner for route in parsed if route.owner}:
                self._leases.confirm_soon(owner)
            return count

        return add

    def RemoveRoute(
        self, call: Call, source: str, group: str, options: dict[str, Variant]
    ) -> Change:
        given = self._remove_route_options.parse(options)
        key = make_route_key(source, group, given.get("table", 0))
        input = given.get("input", "")
        if input:
            check_ifname(input)

        def remove() -> None:
            route = self._engine.remove_route(key, input)
            self.emitter.audit(call, lambda: f"{route.key} from {route.input}")

        return remove

    def AddOutputs(
        self, call: Call, source: str, group: str, outputs: list[str], options: dict[str, Variant]
    ) -> Change:
        return self._edit_outputs(call, source, group, outputs, options, adding=True)

    def RemoveOutputs(
        self, call: Call, source: str, group: str, outputs: list[str], options: dict[str, Variant]
    ) -> Change:
        return self._edit_outputs(call, source, group, outputs, options, adding=False)

    def _edit_outputs(
        self,
        call: Call,
        source: str,
        group: str,
        outputs: list[str],
        options: dict[str, Variant],
        *,
        adding: bool,
    ) -> Change:
        given = self._outputs_options.parse(options, call.member)
        key = make_route_key(source, group, given.get("table", 0))
        input = given.get("input", "")
        for name in [input, *outputs] if input else outputs:
            check_ifname(name)
        edit = self._engine.add_outputs if adding else self._engine.remove_outputs
        sign = "+" if adding else "-"

        def change() -> list[str]:
            route = edit(key, outputs, input)
            named = " ".join(sign + name for name in outputs)
            self.emitter.audit(call, lambda: f"{named}: {_describe(route)}")
            return list(route.outputs)

        return change

    def Flush(self, call: Call, options: dict[str, Variant]) -> Change:
        given = self._flush_options.parse(options)

        def flush() -> int:
            if given.get("learned"):
                dropped = self._engine.flush_learned(given.get("family"), given.get("table"))
                self.emitter.audit(call, f"{_filter_text(given)}: {dropped} learned flows removed")
                return dropped
            removed = self._engine.flush(given.get("family"), given.get("table"))
            self.emitter.audit(call, f"{_filter_text(given)}: {len(removed)} routes removed")
            return len(removed)

        return flush

    @public
    def ListRoutes(self, call: Call, filter: dict[str, Variant]) -> list[Any]:
        given = self._route_filter.parse(filter)
        with gc_paused():  # a row is a dozen objects, none in a cycle (gcpause.py)
            page = self._engine.list_page(
                given.get("family"), given.get("table"), after=given.get("after"),
                limit=given.get("limit"),
            )  # fmt: skip
            return self._wire.route_page(page.statuses, page.next, self.message_limit)

    # -- interfaces ----------------------------------------------------------------
    def AddVif(self, call: Call, interface: str, options: dict[str, Variant]) -> Change:
        given = self._add_vif_options.parse(options)
        config = VifConfig(
            interface=check_ifname(interface),
            family=given.get("family", Family.IPV4),
            table=given.get("table", 0),
            ttl_threshold=given.get("ttl_threshold", 1),  # the engine checks its range
            persistent=given.get("persistent", True),
            mrdisc=given.get("mrdisc", False),
        )

        def add() -> int:
            status = self._engine.add_vif(config)
            self.emitter.audit(
                call,
                f"{interface} {config.family} table {config.table} ttl {config.ttl_threshold}"
                + (" mrdisc" if config.mrdisc else ""),
            )
            return vif_index(status)

        return add

    def RemoveVif(self, call: Call, interface: str, options: dict[str, Variant]) -> Change:
        given = self._remove_vif_options.parse(options)
        family = given.get("family", Family.IPV4)
        table = given.get("table", 0)
        check_ifname(interface)

        def remove() -> None:
            self._engine.remove_vif(interface, family, table)
            self.emitter.audit(call, f"{interface} {family} table {table}")

        return remove

    @public
    def ListVifs(self, call: Call, filter: dict[str, Variant]) -> list[Any]:
        given = self._vif_filter.parse(filter)
        vifs = self._engine.list_vifs(given.get("family"), given.get("table"))
        return [self._wire.vif_tuple(vif) for vif in vifs]

    # -- group joins -------------------------------------------------------------------
    def JoinGroup(
        self, call: Call, interface: str, source: str, group: str, options: dict[str, Variant]
    ) -> Change:
        join = self._groups.join_from_args(interface, source, group, options, call.sender)

        def add() -> None:
            self._engine.join_group(join)
            self.emitter.audit(call, lambda: _describe_join(join))
            if join.owner:
                self._leases.confirm_soon(join.owner)

        return add

    def LeaveGroup(
        self, call: Call, interface: str, source: str, group: str, options: dict[str, Variant]
    ) -> Change:
        table = self._groups.leave_options.parse(options).get("table", 0)
        key = self._groups.key_from_args(interface, source, group, table, "LeaveGroup")

        def leave() -> None:
            self._engine.leave_group(key)
            self.emitter.audit(call, key.__str__)

        return leave

    @public
    def ListGroups(self, call: Call, filter: dict[str, Variant]) -> list[Any]:
        given = self._groups.filter.parse(filter)
        statuses = self._engine.list_groups(given.get("family"), given.get("table"))
        return [self._groups.group_tuple(status) for status in statuses]

    def Reload(self, call: Call) -> Change:
        def reload() -> None:
            result = self._engine.reload()
            self.emitter.audit(
                call,
                f"{result.added} added, {result.removed} removed, "
                f"{result.changed} changed, {result.unchanged} unchanged",
            )

        return reload

    # -- what the dispatcher needs besides the handlers ------------------------------
    def property_value(self, name: str) -> Any:
        return self._properties[name]()

    def _counts(self) -> dict[str, int]:
        engine = self._raw_engine
        return {
            "RouteCount": engine.route_count,
            "VifCount": engine.vif_count,
            "GroupCount": engine.group_count,
        }

    # -- EngineListener ------------------------------------------------------------
    def route_added(self, route: Route) -> None:
        self.emitter.signal("RouteAdded", route)
        if route.owner:
            self._leases.watch(route.owner)

    def route_removed(self, route: Route) -> None:
        self.emitter.signal("RouteRemoved", route)

    def vif_added(self, vif: VifStatus) -> None:
        self.emitter.signal("VifAdded", vif)

    def vif_removed(self, vif: VifStatus) -> None:
        self.emitter.signal("VifRemoved", vif)

    def group_joined(self, join: Join) -> None:
        self.emitter.signal("GroupJoined", join)
        if join.owner:
            self._leases.watch(join.owner)

    def group_left(self, join: Join) -> None:
        self.emitter.signal("GroupLeft", join)


def _wants_replace(options: dict[str, Variant], default: bool = False) -> bool:
    """The replace option (its type already checked by the options' spec)."""
    given = options.get("replace")
    return bool(given.value) if given is not None else default


def _describe(route: Route) -> str:
    flags = " lease" if route.owner else ("" if route.persistent else " transient")
    outputs = ",".join(route.outputs) or "nothing (blocking)"
    return f"{route.key} in {route.input} out {outputs}{flags}"


def _describe_join(join: Join) -> str:
    flags = " lease" if join.owner else ("" if join.persistent else " transient")
    return f"{join.key}{flags}"


def _summary(routes: list[Route], limit: int = 3) -> str:
    shown = "; ".join(_describe(route) for route in routes[:limit])
    return shown + (f"; ... {len(routes) - limit} more" if len(routes) > limit else "")


def _filter_text(given: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(given.items())) or "all"
