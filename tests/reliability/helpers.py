"""Shared pieces of the reliability tests: a raw D-Bus caller, the service's view of
the routes in the shape of the kernel's read-back, and extra lab interfaces."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from mfc_dbus.names import BUS_NAME, INTERFACE, OBJECT_PATH
from mfc_lab import Lab, netns_run
from mfc_lab.bus import PrivateBus
from mfc_lab.daemon import KernelEntry, ServiceProcess


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, a private system bus, MRT sockets")


# dbus-fast before 2.0 (Debian 12's 1.84) writes a string's length in characters, not
# bytes: a caller using it cannot send non-ASCII text at all (the bus drops the caller's
# connection). The service answers such calls from other clients (busctl) correctly.
OLD_DBUS_FAST = int(importlib.metadata.version("dbus-fast").split(".")[0]) < 2


@dataclass
class Caller:
    """Raw calls to org.mfc.Forwarding1: any signature, any body, the reply as is."""

    bus: MessageBus

    @classmethod
    async def connect(cls, address: str) -> Caller:
        return cls(await MessageBus(bus_address=address).connect())

    async def call(
        self, member: str, signature: str = "", body: list[Any] | None = None,
        *, flags: MessageFlag = MessageFlag.NONE,
    ) -> Message:  # fmt: skip
        return await self.bus.call(
            Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE,
                    member=member, signature=signature, body=body or [], flags=flags)
        )  # fmt: skip

    async def ok(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        reply = await self.call(member, signature, body)
        assert reply.message_type is MessageType.METHOD_RETURN, (member, reply.error_name,
                                                                 reply.body)  # fmt: skip
        return reply.body

    async def list_routes(self) -> list[Any]:
        return (await self.ok("ListRoutes", "a{sv}", [{}]))[0]

    def close(self) -> None:
        self.bus.disconnect()


def expected_kernel(routes: list[Any]) -> set[KernelEntry]:
    """The kernel entries ListRoutes' answer implies, shaped like kernel_entries().

    Installed and learned (S,G) routes are in the kernel as listed. A pending route
    whose input is present forwards to the outputs that are present; one whose input
    is missing, or whose table the kernel refused (pending with nothing missing), has
    no entry. Templates ((*,G), source or group prefixes) have no entry of their own.
    """
    found: set[KernelEntry] = set()
    for source, group, input_, outputs, details in routes:
        if source == "*" or "/" in source or "/" in group:
            continue
        state, missing = details["state"].value, set(details["missing"].value)
        if state == "pending" and (input_ in missing or not missing):
            continue
        present = frozenset(outputs) - missing
        found.add((source, group, details["table"].value, input_, present))
    return found


def add_veth_pairs(lab: Lab, pairs: int, prefix: str = "xv") -> list[str]:
    """`2 * pairs` extra interfaces, up, inside the router namespace (veth pairs whose
    both ends stay there: the lab's kernel has no dummy driver)."""
    names: list[str] = []
    for n in range(pairs):
        a, b = f"{prefix}{2 * n}", f"{prefix}{2 * n + 1}"
        netns_run(lab.rtr, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
        netns_run(lab.rtr, "ip", "link", "set", a, "up")
        netns_run(lab.rtr, "ip", "link", "set", b, "up")
        names += [a, b]
    return names


@contextlib.contextmanager
def served(
    tmp_path: Path, lab: Lab, *, state: bool = True, extra_policy: str = "", **kwargs: Any
) -> Iterator[tuple[PrivateBus, ServiceProcess]]:
    """A private bus and mfc-dbusd in the router namespace; both ended on exit."""
    state_file = tmp_path / "state.json" if state else None
    with PrivateBus(extra_policy=extra_policy) as bus:
        with ServiceProcess(bus, lab, state_file, tmp_path / "mfc-dbusd.log", **kwargs) as svc:
            yield bus, svc
