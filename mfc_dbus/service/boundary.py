"""The one place where exceptions become D-Bus errors.

Expected errors (MfcError subclasses) keep their own D-Bus name and are logged as
warnings; anything else is a bug: logged with its traceback and reported to the
caller as org.mfc.Forwarding1.Error.Failed without internals.
"""

from __future__ import annotations

import logging

from ..errors import MfcError

log = logging.getLogger("mfc_dbus.service")


def error_of(exc: BaseException, member: str) -> tuple[str, str]:
    """The D-Bus error name and message a caller gets for `exc`."""
    if isinstance(exc, MfcError):
        log.warning("%s refused: %s: %s", member, exc.dbus_name, exc.message)
        return exc.dbus_name, exc.message
    log.error("%s failed unexpectedly", member, exc_info=exc)
    return (
        MfcError.dbus_name,
        f"{member} failed with an internal error ({type(exc).__name__}); "
        "the service log has the details",
    )
