"""What D-Bus calls may do to group joins: join, replace a runtime join, leave.

A configuration file's join (`Join.origin` set) is the administrator's: a call can
neither replace nor leave it, as with the files' routes (configured.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..errors import AlreadyExists, InvalidArgument, MfcError
from ..model import Family
from .events import Listeners
from .joins import Join, JoinKey, JoinManager, JoinStatus
from .persist import Persistence
from .state import StateFileError

log = logging.getLogger(__name__)


def observe(manager: JoinManager, state: Persistence, listeners: Listeners) -> None:
    """Every join made or left is told to the listeners and, if it persists, written
    to the state file (a join that cannot be written is not made: see join_group)."""

    def joined(join: Join) -> None:
        listeners.group_joined(join)
        state.record_join(join, True)

    def left(join: Join) -> None:
        listeners.group_left(join)
        try:
            state.record_join(join, False)
        except StateFileError as exc:
            log.error("join %s was left, but the state file still has it: %s", join.key, exc)

    manager.on_joined = joined
    manager.on_left = left


def join_group(manager: JoinManager, join: Join) -> JoinStatus:
    """Add `join`, or replace a runtime join with the same key (its persistence or
    lease); if the new one cannot be made, the old one is joined again."""
    current = next((j for j in manager.joins() if j.key == join.key), None)
    if current is None:
        return _add_saved(manager, join)
    if current.origin:
        raise AlreadyExists(
            f"join {join.key} is configured in {current.origin}; change it there and "
            "reload (mfc-dbus reload)"
        )
    manager.remove(join.key)
    try:
        return _add_saved(manager, join)
    except MfcError:
        manager.add(current)
        raise


def _add_saved(manager: JoinManager, join: Join) -> JoinStatus:
    """Add a join; if the state file cannot record it, leave it again."""
    try:
        return manager.add(join)
    except StateFileError:
        manager.remove(join.key)
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


def restore(manager: JoinManager, saved: Iterable[Join]) -> None:
    """At start: the state file's joins (one the kernel refuses is logged, the others
    still made)."""
    for join in saved:
        try:
            manager.add(join)
        except MfcError as exc:
            log.error("saved group join %s: %s", join.key, exc.message)


def apply_saved(manager: JoinManager, saved: Iterable[Join]) -> None:
    """On Reload: the persistent joins become the state file's; a configuration file's
    join with the same key stays the file's."""
    wanted = {join.key: join for join in saved}
    current = {join.key: join for join in manager.joins()}
    for key, join in current.items():
        if join.persistent and not join.owner and not join.origin and key not in wanted:
            manager.remove(key)
    for key, join in wanted.items():
        held = current.get(key)
        if held is not None and (held.origin or held == join):
            continue
        if held is not None:
            manager.remove(key)
        try:
            manager.add(join)
        except MfcError as exc:
            log.error("saved group join %s: %s", key, exc.message)
