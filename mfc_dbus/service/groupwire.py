"""Group joins <-> the contract's D-Bus values (JoinGroup, ListGroups, the signals)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbus_fast import Variant

from ..contract import Contract
from ..engine.joins import Join, JoinKey, JoinStatus, make_join_key
from ..errors import InvalidArgument
from .options import option_spec

GroupTuple = tuple[str, str, str, dict[str, Variant]]

JOIN_DETAILS: dict[str, Callable[[JoinStatus], Any]] = {
    "state": lambda status: status.state.value,
    "interfaces": lambda status: list(status.interfaces),
    "memberships": lambda status: status.memberships,
    "error": lambda status: status.error or "",
    "persistent": lambda status: status.join.persistent,
    "owner": lambda status: status.join.owner or "",
    "table": lambda status: status.join.key.table,
    "family": lambda status: status.join.key.family.value,
    "origin": lambda status: status.join.origin or "",
}
GROUP_SIGNAL_FIELDS = ("interface", "source", "group", "table", "family")


def group_signal_values(join: Join) -> tuple[Any, ...]:
    key = join.key
    source, group = key.texts
    return key.interface, source, group, key.table, key.family.value


class GroupWire:
    def __init__(self, contract: Contract) -> None:
        self.join_options = option_spec(contract, "JoinGroup")
        self.leave_options = option_spec(contract, "LeaveGroup")
        self.filter = option_spec(contract, "ListGroups", "filter")
        wanted = contract.methods["ListGroups"].arg("groups").keys
        if set(wanted) != set(JOIN_DETAILS):
            raise TypeError(
                f"ListGroups: the contract names {sorted(wanted)}, "
                f"the service fills {sorted(JOIN_DETAILS)}"
            )
        self._details = tuple((key, sig, JOIN_DETAILS[key]) for key, sig in wanted.items())

    def join_from_args(
        self, interface: str, source: str, group: str, options: dict[str, Variant], sender: str
    ) -> Join:
        given = self.join_options.parse(options)
        lease = bool(given.get("lease", False))
        if lease and given.get("persistent") is True:
            raise InvalidArgument(
                "JoinGroup: options lease=true and persistent=true conflict: a lease join "
                "ends with its caller and is never saved; drop one of them"
            )
        key = self.key_from_args(interface, source, group, given.get("table", 0), "JoinGroup")
        return Join(
            key,
            persistent=False if lease else bool(given.get("persistent", True)),
            owner=sender if lease else None,
        )

    def key_from_args(
        self, interface: str, source: str, group: str, table: int, where: str
    ) -> JoinKey:
        try:
            return make_join_key(interface, source, group, table)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}") from None

    def group_tuple(self, status: JoinStatus) -> GroupTuple:
        key = status.join.key
        details = {name: Variant(sig, get(status)) for name, sig, get in self._details}
        return key.interface, key.texts[0], key.texts[1], details
