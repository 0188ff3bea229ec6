"""The audit trail: one line per change, naming who made it (logger `mfc_dbus.audit`).

Calls are written as `uid=<uid> sender=<unique name> <Method>: <what changed>`;
changes the service makes on its own (a lease ending, SIGHUP) say why instead.
"""

from __future__ import annotations

import logging

AUDIT_LOGGER = "mfc_dbus.audit"
audit = logging.getLogger(AUDIT_LOGGER)


def enabled() -> bool:
    return audit.isEnabledFor(logging.INFO)


def call_line(uid: int | None, sender: str, member: str, text: str) -> None:
    # One preformatted message: cheaper than %-arguments, and written once per change.
    audit.info(f"uid={uid} sender={sender} {member}: {text}")


def lease_ended(owner: str, why: str, removed: int) -> None:
    audit.info(f"lease holder {owner} {why}: {removed} routes removed")


def reload_on_signal(uid: int, result: object) -> None:
    audit.info(f"uid={uid} SIGHUP reload: {result}")
