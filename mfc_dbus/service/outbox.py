"""Everything the service sends on its bus connection, in order, with flow control.

dbus-fast writes a message at once when its own queue is empty, even while an
earlier message is still half written because the socket was full; that write then
fails with EAGAIN and dbus-fast drops the connection (python-dbus-next issue #153,
still so in dbus-fast 5.x; 1.84 also sends queued messages last-in first-out). A
burst, such as the 10,000 RouteAdded signals of one AddRoutes, fills the socket.

So the service hands dbus-fast one message at a time once the socket pushes back:
`bus.send()` returns a future that is done when the message is written, usually at
once. While it is not, further messages wait here and go out, in order, as each
earlier one is written. The service's own method calls (to the bus daemon and to
polkit) go through here too (`call`), so dbus-fast never holds more than one of them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from ..errors import MfcError
from ..names import DBUS_DAEMON_INTERFACE, DBUS_DAEMON_NAME, DBUS_DAEMON_PATH


class BusGone(MfcError):
    """The bus connection ended before the reply came."""


def daemon_call(member: str, signature: str, body: list[Any]) -> Message:
    """A method call to the bus daemon itself (org.freedesktop.DBus)."""
    return Message(
        destination=DBUS_DAEMON_NAME,
        path=DBUS_DAEMON_PATH,
        interface=DBUS_DAEMON_INTERFACE,
        member=member,
        signature=signature,
        body=body,
    )


class Outbox:
    __slots__ = ("_bus", "_waiting", "_writing", "_calls")

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._waiting: deque[Message] = deque()
        self._writing: asyncio.Future[Any] | None = None  # a send not yet written
        self._calls: dict[int, asyncio.Future[Message]] = {}  # serial -> its reply
        bus.add_message_handler(self._on_message)

    async def call(self, message: Message) -> Message:
        """Send a method call; its reply (a METHOD_RETURN or an ERROR message)."""
        message.serial = self._bus.next_serial()
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._calls[message.serial] = reply
        try:
            self.send(message)
            return await reply
        finally:
            self._calls.pop(message.serial, None)

    def _on_message(self, message: Message) -> bool | None:
        if message.message_type is MessageType.METHOD_CALL:
            return None
        if message.message_type is MessageType.SIGNAL:
            return None
        reply = self._calls.pop(message.reply_serial, None)
        if reply is None:
            return None
        if not reply.done():
            reply.set_result(message)
        return True

    def close(self) -> None:
        """The connection is gone: calls still waiting fail with BusGone."""
        self._waiting.clear()
        for reply in self._calls.values():
            if not reply.done():
                reply.set_exception(BusGone("the bus connection was lost before the reply"))
        self._calls.clear()

    def send(self, message: Message) -> None:
        if self._writing is None:
            self._hand_over(message)
        else:
            self._waiting.append(message)

    def _hand_over(self, message: Message) -> None:
        written = self._bus.send(message)
        if not written.done():
            self._writing = written
            written.add_done_callback(self._written)

    def _written(self, written: asyncio.Future[Any]) -> None:
        self._writing = None
        if written.cancelled() or written.exception() is not None:
            self.close()  # the connection is gone; the service reconnects
            return
        while self._waiting and self._writing is None and self._bus.connected:
            self._hand_over(self._waiting.popleft())
