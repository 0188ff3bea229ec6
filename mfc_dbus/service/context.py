"""The incoming message of the method call being handled.

dbus-fast does not pass the message to `@dbus_method` handlers. A bus message handler
runs before dispatch and stores the message in a ContextVar; the handler's task is
created right after, so it inherits the value (one copy per call, no cross-talk).
"""

from __future__ import annotations

from contextvars import ContextVar

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from ..names import OBJECT_PATH

_ALLOW_INTERACTIVE = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION.value  # int: Flag & is slow
_current: ContextVar[Message | None] = ContextVar("mfc_dbus_current_message", default=None)


def _remember(message: Message) -> None:
    if message.message_type is MessageType.METHOD_CALL and message.path == OBJECT_PATH:
        _current.set(message)
    # Returning None lets dbus-fast dispatch the message as usual.


def install(bus: MessageBus) -> None:
    """Start recording incoming calls on `bus` (call once, before exporting)."""
    bus.add_message_handler(_remember)


def current_message() -> Message:
    message = _current.get()
    if message is None:
        raise RuntimeError("no incoming D-Bus call in this context")
    return message


def allows_interaction(message: Message) -> bool:
    """True when the caller set the ALLOW_INTERACTIVE_AUTHORIZATION header flag."""
    return bool(message.flags.value & _ALLOW_INTERACTIVE)
