"""What D-Bus calls may do to group joins: join, replace a runtime join, leave.

A configuration file's join (`Join.origin` set) is the administrator's: a call can
neither replace nor leave it, as with the files' routes (configured.py).
"""

from __future__ import annotations

from ..errors import AlreadyExists, InvalidArgument, MfcError
from ..model import Family
from .joins import Join, JoinKey, JoinManager, JoinStatus


def join_group(manager: JoinManager, join: Join) -> JoinStatus:
    """Add `join`, or replace a runtime join with the same key (its persistence or
    lease); if the new one cannot be made, the old one is joined again."""
    current = next((j for j in manager.joins() if j.key == join.key), None)
    if current is None:
        return manager.add(join)
    if current.origin:
        raise AlreadyExists(
            f"join {join.key} is configured in {current.origin}; change it there and "
            "reload (mfc-dbus reload)"
        )
    manager.remove(join.key)
    try:
        return manager.add(join)
    except MfcError:
        manager.add(current)
        raise


def leave_group(manager: JoinManager, key: JoinKey) -> Join:
    current = manager.get(key).join  # NotFound when there is none
    if current.origin:
        raise InvalidArgument(
            f"join {key} is configured in {current.origin}; remove it there and reload "
            "(mfc-dbus reload)"
        )
    return manager.remove(key)


def list_groups(
    manager: JoinManager, family: Family | None = None, table: int | None = None
) -> list[JoinStatus]:
    return manager.list_joins(family, table)


def lease_owners(manager: JoinManager) -> set[str]:
    return {join.owner for join in manager.joins() if join.owner}
