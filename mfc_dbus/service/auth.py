"""Authorization: polkit for every mutating call, default-deny by construction.

- `Authorizer.authorize(message, action)` is the one awaited check.
- `@requires(action)` marks a mutating method and `@public` a read; both must sit
  *below* `@dbus_method()` (which captures the function it decorates: a decorator
  above it is silently skipped). `AuthorizedInterface.__init_subclass__` fails at
  import time when an exported method lacks a mark, which also catches a wrong order.
- Inside a `@requires` method the engine is reached through `GuardedEngine`, which
  refuses every mutating engine call until the call has been authorized.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from ..errors import AccessDenied, InteractiveAuthorizationRequired
from ..names import (
    DBUS_DAEMON_INTERFACE,
    DBUS_DAEMON_NAME,
    DBUS_DAEMON_PATH,
    DBUS_NAME_HAS_NO_OWNER,
    DBUS_SERVICE_UNKNOWN,
    POLKIT_ALLOW_USER_INTERACTION,
    POLKIT_BUS_NAME,
    POLKIT_INTERFACE,
    POLKIT_OBJECT_PATH,
    POLKIT_SUBJECT_BUS_NAME,
)
from .boundary import to_dbus_error
from .context import allows_interaction, current_message

log = logging.getLogger("mfc_dbus.service.auth")

ACTION_MARK = "__mfc_action__"
PUBLIC_MARK = "__mfc_public__"
_POLKIT_ABSENT = (DBUS_SERVICE_UNKNOWN, DBUS_NAME_HAS_NO_OWNER)

F = TypeVar("F", bound=Callable[..., Any])


class Authorizer:
    """Asks polkit about callers, with a uid-0 fast path and a per-name uid cache."""

    def __init__(self, bus: MessageBus, *, trust_root: bool = True) -> None:
        self._bus = bus
        self._trust_root = trust_root
        self._uids: dict[str, int] = {}

    def forget(self, name: str) -> None:
        """A unique name left the bus: its cached uid is no longer needed."""
        self._uids.pop(name, None)

    async def uid_of(self, sender: str) -> int:
        uid = self._uids.get(sender)
        if uid is None:
            reply = await self._bus.call(
                Message(
                    destination=DBUS_DAEMON_NAME,
                    path=DBUS_DAEMON_PATH,
                    interface=DBUS_DAEMON_INTERFACE,
                    member="GetConnectionUnixUser",
                    signature="s",
                    body=[sender],
                )
            )
            if reply.message_type is MessageType.ERROR:
                raise AccessDenied(f"cannot identify caller {sender}: {reply.body}")
            uid = int(reply.body[0])
            self._uids[sender] = uid  # a unique name's uid never changes
        return uid

    async def authorize(self, message: Message, action: str) -> int:
        """Return the uid of the call's sender, or raise AccessDenied or
        InteractiveAuthorizationRequired (the call's allow-interactive flag is passed on)."""
        sender = message.sender
        uid = await self.uid_of(sender)
        if uid == 0 and self._trust_root:
            return uid
        interactive = allows_interaction(message)
        reply = await self._bus.call(
            Message(
                destination=POLKIT_BUS_NAME,
                path=POLKIT_OBJECT_PATH,
                interface=POLKIT_INTERFACE,
                member="CheckAuthorization",
                signature="(sa{sv})sa{ss}us",
                body=[
                    [POLKIT_SUBJECT_BUS_NAME, {"name": Variant("s", sender)}],
                    action,
                    {},
                    POLKIT_ALLOW_USER_INTERACTION if interactive else 0,
                    "",
                ],
            )
        )
        if reply.message_type is MessageType.ERROR:
            if reply.error_name in _POLKIT_ABSENT:
                if uid == 0:
                    return uid
                raise AccessDenied(
                    f"uid {uid} is not allowed to use {action}: polkitd is not running, "
                    "so only root may make changes"
                )
            log.error("polkit CheckAuthorization failed: %s %s", reply.error_name, reply.body)
            raise AccessDenied(
                f"uid {uid} is not allowed to use {action}: polkit failed ({reply.error_name})"
            )
        authorized, challenge, _details = reply.body[0]
        if authorized:
            return uid
        if challenge and not interactive:
            raise InteractiveAuthorizationRequired(
                f"{action} needs authentication for uid {uid}; call again with the "
                "allow-interactive-authorization flag (busctl --allow-interactive-"
                "authorization=yes, mfc-dbus asks by default on a terminal)"
            )
        raise AccessDenied(
            f"uid {uid} is not authorized for {action}; an administrator can grant it with "
            "a polkit rule (see /usr/share/doc/mfc-dbus/50-org.mfc.Forwarding1.rules)"
        )


@dataclass
class Call:
    """The mutating call being handled: who, which action, and whether it passed."""

    message: Message
    member: str
    action: str
    uid: int | None = None

    @property
    def authorized(self) -> bool:
        return self.uid is not None


_call: ContextVar[Call | None] = ContextVar("mfc_dbus_current_call", default=None)


def current_call() -> Call | None:
    return _call.get()


async def authorize(authorizer: Authorizer) -> Call:
    """Check the current `@requires` call against polkit; returns it, authorized."""
    call = _call.get()
    if call is None:
        raise RuntimeError("authorize() outside a @requires method")
    if not call.authorized:
        call.uid = await authorizer.authorize(call.message, call.action)
    return call


def requires(action: str) -> Callable[[F], F]:
    """Mark an async exported method as mutating under polkit `action` (put it below
    `@dbus_method()`). The body validates, then awaits `authorize()`, then changes."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: Any, *args: Any) -> Any:
            call = Call(current_message(), fn.__name__, action)
            token = _call.set(call)
            try:
                result = await fn(self, *args)
                if not call.authorized:
                    raise RuntimeError(f"{fn.__name__} returned without authorizing")
                return result
            except Exception as exc:
                raise to_dbus_error(exc, fn.__name__) from None
            finally:
                _call.reset(token)

        setattr(wrapper, ACTION_MARK, action)
        return wrapper  # type: ignore[return-value]

    return decorator


def public(fn: F) -> F:
    """Mark an exported method as a read that needs no authorization."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except Exception as exc:
            raise to_dbus_error(exc, fn.__name__) from None

    setattr(wrapper, PUBLIC_MARK, True)
    return wrapper  # type: ignore[return-value]


def exported_methods(cls: type) -> dict[str, Callable[..., Any]]:
    """D-Bus member name -> the function dbus-fast will call, for every exported method."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            method = getattr(value, "__dict__", {}).get("__DBUS_METHOD")
            if method is not None:
                found[method.name] = method.fn
    return found


def check_marks(cls: type) -> None:
    """Raise TypeError if an exported method is neither `@requires` nor `@public`."""
    for name, fn in exported_methods(cls).items():
        if not hasattr(fn, ACTION_MARK) and not hasattr(fn, PUBLIC_MARK):
            raise TypeError(
                f"{cls.__name__}.{name} is exported without @requires(action) or @public "
                "directly below @dbus_method() (a decorator above @dbus_method is skipped)"
            )


def action_of(cls: type, member: str) -> str | None:
    return getattr(exported_methods(cls)[member], ACTION_MARK, None)


class AuthorizedInterface(ServiceInterface):
    """A ServiceInterface whose exported methods are all marked (checked at class build)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_marks(cls)


class GuardedEngine:
    """Forwards to the engine; mutating calls need an authorized `@requires` call.

    Internal callers (leases, SIGHUP) use the engine itself, not this guard.
    """

    MUTATORS = frozenset(
        {"add_route", "add_routes", "remove_route", "flush", "add_vif", "remove_vif", "reload"}
    )

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        for name in self.MUTATORS:
            setattr(self, name, _guarded(engine, name))

    def __getattr__(self, name: str) -> Any:  # the reads
        return getattr(self._engine, name)


def _guarded(engine: Any, name: str) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        call = _call.get()
        if call is None or not call.authorized:
            raise AccessDenied(f"engine.{name} called without authorization")
        return getattr(engine, name)(*args, **kwargs)

    return guarded


__all__ = [
    "AuthorizedInterface",
    "Authorizer",
    "Call",
    "DBusError",
    "GuardedEngine",
    "authorize",
    "check_marks",
    "current_call",
    "public",
    "requires",
]
