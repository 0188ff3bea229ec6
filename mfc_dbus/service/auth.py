"""Authorization: polkit for every mutating call, default-deny by construction.

- The contract XML names each mutating method's polkit action; the dispatcher
  authorizes every such call between its validation and its change, so a handler
  cannot skip the check. A read must be marked `@public` on its handler, and the
  dispatcher refuses to start when the marks and the XML disagree.
- `Authorizer.authorize(call)` is the one check: uid 0 passes without asking (the
  uid of a unique bus name never changes, so it is kept per name); everyone else is
  asked of polkit's CheckAuthorization. A caller that left the bus before it could be
  identified is CallerGone: its call is not made (see the contract's documentation
  of calls that expect no reply).
- The engine is reached through `GuardedEngine`, which refuses every mutating
  engine call outside an authorized call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from dbus_fast import Message, MessageFlag, MessageType, Variant

from ..errors import AccessDenied, InteractiveAuthorizationRequired
from ..names import (
    DBUS_NAME_HAS_NO_OWNER,
    DBUS_SERVICE_UNKNOWN,
    EXAMPLE_RULES_INSTALLED,
    POLKIT_ALLOW_USER_INTERACTION,
    POLKIT_BUS_NAME,
    POLKIT_INTERFACE,
    POLKIT_OBJECT_PATH,
    POLKIT_SUBJECT_BUS_NAME,
)
from .outbox import Outbox, daemon_call

log = logging.getLogger("mfc_dbus.service.auth")

PUBLIC_MARK = "__mfc_public__"
_POLKIT_ABSENT = (DBUS_SERVICE_UNKNOWN, DBUS_NAME_HAS_NO_OWNER)
_ALLOW_INTERACTIVE = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION.value  # int: Flag & is slow
_LEFT_THE_BUS = "the caller left the bus before it could be authorized"

F = TypeVar("F", bound=Callable[..., Any])


def public(fn: F) -> F:
    """Mark a handler as a read that needs no authorization (the XML names no action)."""
    setattr(fn, PUBLIC_MARK, True)
    return fn


def is_public(fn: Callable[..., Any]) -> bool:
    return bool(getattr(fn, PUBLIC_MARK, False))


class CallerGone(AccessDenied):
    """The caller left the bus before its call could be authorized."""


@dataclass(slots=True)
class Call:
    """The call being handled: its message, member, polkit action, and the caller's
    uid once it is authorized."""

    message: Message
    member: str
    action: str | None
    uid: int | None = None

    @property
    def sender(self) -> str:
        return self.message.sender

    @property
    def authorized(self) -> bool:
        return self.uid is not None

    @property
    def allows_interaction(self) -> bool:
        """The caller set the ALLOW_INTERACTIVE_AUTHORIZATION header flag."""
        return bool(self.message.flags.value & _ALLOW_INTERACTIVE)


_call: ContextVar[Call | None] = ContextVar("mfc_dbus_current_call", default=None)


class changing:  # lower case: used like a function, `with changing(call):`
    """The engine's mutators are open for `call` (authorized) while inside. A class,
    not @contextmanager: it is entered once per call and a generator costs more."""

    __slots__ = ("_call", "_token")

    def __init__(self, call: Call) -> None:
        if not call.authorized:
            raise AccessDenied(f"{call.member} was not authorized")
        self._call = call

    def __enter__(self) -> None:
        self._token = _call.set(self._call)

    def __exit__(self, *exc_info: object) -> None:
        _call.reset(self._token)


class Authorizer:
    """Asks polkit about callers, with a uid-0 fast path and a per-name uid record."""

    def __init__(self, outbox: Outbox, *, trust_root: bool = True) -> None:
        self._outbox = outbox
        self._trust_root = trust_root
        self._uids: dict[str, int] = {}  # unique names on the bus -> uid; see forget()

    def forget(self, name: str) -> None:
        """A unique name left the bus: its uid is no longer needed once the calls it
        made before it left are served (they wait for the next loop turn: see
        dispatch), so it is dropped after them."""
        asyncio.get_running_loop().call_soon(self._uids.pop, name, None)

    def allows_at_once(self, call: Call) -> bool:
        """True (and the call authorized) when no round trip is needed: root, known."""
        if self._trust_root and self._uids.get(call.sender) == 0:
            call.uid = 0
            return True
        return False

    async def uid_of(self, sender: str) -> int:
        uid = self._uids.get(sender)
        if uid is None:
            reply = await self._outbox.call(daemon_call("GetConnectionUnixUser", "s", [sender]))
            if reply.message_type is MessageType.ERROR:
                if reply.error_name == DBUS_NAME_HAS_NO_OWNER:
                    raise CallerGone(_LEFT_THE_BUS)
                raise AccessDenied(f"cannot identify caller {sender}: {reply.body}")
            uid = int(reply.body[0])
            self._uids[sender] = uid
        return uid

    async def authorize(self, call: Call) -> None:
        """Set `call.uid`, or raise AccessDenied or InteractiveAuthorizationRequired
        (the call's allow-interactive flag is passed on to polkit)."""
        assert call.action is not None
        uid = await self.uid_of(call.sender)
        if uid == 0 and self._trust_root:
            call.uid = uid
            return
        interactive = call.allows_interaction
        reply = await self._outbox.call(
            Message(
                destination=POLKIT_BUS_NAME,
                path=POLKIT_OBJECT_PATH,
                interface=POLKIT_INTERFACE,
                member="CheckAuthorization",
                signature="(sa{sv})sa{ss}us",
                body=[
                    [POLKIT_SUBJECT_BUS_NAME, {"name": Variant("s", call.sender)}],
                    call.action,
                    {},
                    POLKIT_ALLOW_USER_INTERACTION if interactive else 0,
                    "",
                ],
            )
        )
        if (
            reply.message_type is MessageType.ERROR
            and reply.error_name not in _POLKIT_ABSENT
            and not await self._on_the_bus(call.sender)
        ):
            raise CallerGone(_LEFT_THE_BUS)  # polkit could not look it up either
        call.uid = self._decide(reply, uid, call.action, interactive)

    async def _on_the_bus(self, name: str) -> bool:
        reply = await self._outbox.call(daemon_call("NameHasOwner", "s", [name]))
        return reply.message_type is not MessageType.METHOD_RETURN or bool(reply.body[0])

    @staticmethod
    def _decide(reply: Message, uid: int, action: str, interactive: bool) -> int:
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
            f"a polkit rule (see {EXAMPLE_RULES_INSTALLED})"
        )


class GuardedEngine:
    """Forwards to the engine; mutating calls need an authorized call in progress.

    Internal callers (leases, SIGHUP) use the engine itself, not this guard.
    """

    MUTATORS = frozenset(
        {
            "add_route",
            "add_routes",
            "remove_route",
            "add_outputs",
            "remove_outputs",
            "flush",
            "add_vif",
            "remove_vif",
            "join_group",
            "leave_group",
            "reload",
        }
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
