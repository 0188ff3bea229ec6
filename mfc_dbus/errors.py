"""Typed errors shared by every layer.

Each class owns its D-Bus error name; the service turns them into D-Bus errors at
one boundary and the client maps the names back to the same classes.
"""

from __future__ import annotations

import errno as errno_codes
import os

from .names import DBUS_ACCESS_DENIED, DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED, ERROR_PREFIX


class MfcError(Exception):
    """Base of every error mfc-dbus raises on purpose."""

    dbus_name: str = ERROR_PREFIX + "Failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MfcError):
    dbus_name = ERROR_PREFIX + "InvalidArgument"


class NotFound(MfcError):
    dbus_name = ERROR_PREFIX + "NotFound"


class AlreadyExists(MfcError):
    dbus_name = ERROR_PREFIX + "AlreadyExists"


class NoSuchInterface(MfcError):
    dbus_name = ERROR_PREFIX + "NoSuchInterface"


class LimitExceeded(MfcError):
    dbus_name = ERROR_PREFIX + "LimitExceeded"


class KernelBusy(MfcError):
    dbus_name = ERROR_PREFIX + "KernelBusy"


class FamilyUnavailable(MfcError):
    """The kernel has no multicast routing for this family (module missing, no IPv6)."""

    dbus_name = ERROR_PREFIX + "FamilyUnavailable"


class KernelError(MfcError):
    """Any other refusal from the kernel; carries the errno."""

    dbus_name = ERROR_PREFIX + "Kernel"

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class AccessDenied(MfcError):
    dbus_name = DBUS_ACCESS_DENIED


class InteractiveAuthorizationRequired(MfcError):
    dbus_name = DBUS_INTERACTIVE_AUTHORIZATION_REQUIRED


ALL_ERRORS: tuple[type[MfcError], ...] = (
    MfcError,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    NoSuchInterface,
    LimitExceeded,
    KernelBusy,
    FamilyUnavailable,
    KernelError,
    AccessDenied,
    InteractiveAuthorizationRequired,
)

ERROR_BY_DBUS_NAME: dict[str, type[MfcError]] = {cls.dbus_name: cls for cls in ALL_ERRORS}


def from_errno(code: int, operation: str) -> MfcError:
    """Translate a kernel errno from a multicast-routing call into a typed error.

    `operation` says what was being done, e.g. "add MFC (10.0.0.1, 232.1.1.1) in table 0".
    """
    text = os.strerror(code)
    if code == errno_codes.EADDRINUSE:
        return KernelBusy(
            f"{operation}: the multicast routing table is already owned by another process "
            "(smcrouted, pimd, igmpproxy?); stop it or use another table"
        )
    if code == errno_codes.ENFILE:
        return LimitExceeded(
            f"{operation}: the VIF table is full (the kernel allows 32 per family and table); "
            "remove an unused interface first"
        )
    if code == errno_codes.ENOENT:
        return NotFound(f"{operation}: no such route in the kernel")
    if code == errno_codes.EINVAL:
        return InvalidArgument(
            f"{operation}: the kernel refused it as invalid "
            "(not a multicast group, or a bad argument)"
        )
    if code == errno_codes.EADDRNOTAVAIL:
        return NoSuchInterface(f"{operation}: no such interface or VIF")
    if code in (errno_codes.EPERM, errno_codes.EACCES):
        return AccessDenied(f"{operation}: {text}: CAP_NET_ADMIN is required")
    return KernelError(f"{operation}: {text} (errno {code})", errno=code)
