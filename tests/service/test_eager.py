"""Method handlers that start at once (service/eager.py): the same results, errors,
contexts and cancellation as a Task, and calls that want no reply still run."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

import pytest
from dbus_fast import Message, MessageFlag

from mfc_dbus.model import make_route_key
from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_dbus.service.eager import run_eagerly

from .harness import running_service

GROUP = "233.252.0.7"
where: ContextVar[str] = ContextVar("where", default="outside")


Done = list[asyncio.Future[Any]]
Keep = set[asyncio.Future[Any]]


def test_a_handler_that_never_waits_is_done_before_run_eagerly_returns() -> None:
    async def handler() -> str:
        where.set("handler")
        return where.get()

    async def scenario() -> None:
        done: Done = []
        keep: Keep = set()
        run_eagerly(handler(), done.append, keep)
        assert len(done) == 1 and done[0].result() == "handler"
        assert not keep, "no Task was needed"
        assert where.get() == "outside", "the handler ran in a copy of the context"

    asyncio.run(scenario())


def test_a_handler_that_waits_goes_on_in_a_task_in_its_own_context() -> None:
    async def handler(answer: asyncio.Future[int]) -> tuple[str, int]:
        where.set("handler")
        value = await answer
        return where.get(), value

    async def scenario() -> None:
        done: Done = []
        keep: Keep = set()
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        run_eagerly(handler(answer), done.append, keep)
        assert not done and len(keep) == 1
        answer.set_result(42)
        while not done:
            await asyncio.sleep(0)
        assert done[0].result() == ("handler", 42)
        assert where.get() == "outside"
        assert not keep, "the Task is let go once done"

    asyncio.run(scenario())


def test_errors_reach_on_done_whether_raised_at_once_or_after_a_wait() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later(answer: asyncio.Future[None]) -> None:
        await answer
        raise KeyError("later")

    async def scenario() -> None:
        done: Done = []
        keep: Keep = set()
        run_eagerly(fails_at_once(), done.append, keep)
        with pytest.raises(ValueError, match="at once"):
            done[0].result()
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        run_eagerly(fails_later(answer), done.append, keep)
        answer.set_result(None)
        while len(done) < 2:
            await asyncio.sleep(0)
        with pytest.raises(KeyError, match="later"):
            done[1].result()

    asyncio.run(scenario())


@pytest.mark.parametrize("task_started", [False, True])
def test_cancelling_the_task_cancels_the_waiting_handler(task_started: bool) -> None:
    cleaned_up: list[str] = []

    async def handler(answer: asyncio.Future[None]) -> None:
        try:
            await answer
        finally:
            cleaned_up.append(where.get())

    async def scenario() -> None:
        done: Done = []
        keep: Keep = set()
        where.set("caller")
        run_eagerly(handler(asyncio.get_running_loop().create_future()), done.append, keep)
        (task,) = keep
        if task_started:
            await asyncio.sleep(0)  # the Task has taken over the wait
        task.cancel()
        while not done:
            await asyncio.sleep(0)
        assert done[0].cancelled()
        assert cleaned_up == ["caller"]

    asyncio.run(scenario())


def test_a_call_that_wants_no_reply_still_makes_its_change(bus, polkit, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mfc_dbus.service")

    def add_route(source: str, input: str) -> Message:
        return Message(
            destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member="AddRoute",
            signature="sssasa{sv}", body=[source, GROUP, input, ["down0"], {}],
            flags=MessageFlag.NO_REPLY_EXPECTED,
        )  # fmt: skip

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, engine, client):
            await client.bus.send(add_route("192.0.2.1", "up0"))
            await client.bus.send(add_route("192.0.2.2", "no such interface!"))
            await client.ok("ListRoutes", "a{sv}", [{}])  # answered after both
            assert make_route_key("192.0.2.1", GROUP) in engine.routes
            assert make_route_key("192.0.2.2", GROUP) not in engine.routes

    asyncio.run(scenario())
    assert any(
        "AddRoute (no reply wanted) failed: org.mfc.Forwarding1.Error.InvalidArgument"
        in r.getMessage()
        for r in caplog.records
    ), caplog.text
