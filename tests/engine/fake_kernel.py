"""A fake kernel port (multicast-routing sockets, link events, interface names): engine
logic tests without root."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Container

from mfc_dbus.errors import (
    AlreadyExists,
    KernelError,
    LimitExceeded,
    MfcError,
    NoSuchInterface,
    NotFound,
)
from mfc_dbus.kernel import SgCounters, VifCounters
from mfc_dbus.kernel.membership import Membership
from mfc_dbus.kernel.netlink import LinkEvent


def _address(value):
    """The kernel layer takes packed addresses: keep ipaddress objects (easier to read
    in a test's assertions)."""
    return ipaddress.ip_address(value) if isinstance(value, bytes) else value


class FakeSocket:
    def __init__(self, family, table, kernel: FakeKernel) -> None:
        self.family, self.table = family, table
        self.adopted = False  # a fresh MRT_INIT (the real one: True when taken from an fd)
        self.kernel = kernel
        self.interfaces = kernel.interfaces  # the fake namespace's name -> ifindex (shared)
        self.vifs: dict[int, tuple[int, int]] = {}
        self.mfc: dict[tuple, tuple[int, dict[int, int]]] = {}
        self.log = kernel.log  # every call, in order, shared by all sockets of the kernel
        self.fail_add_mfc_after: int | None = None
        self.counters: dict[tuple, SgCounters] = {}  # (S, G) -> what sg_counters reads
        self._upcalls: list = []
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.closed = False
        self.assert_mode = self.pim_mode = False

    def fileno(self) -> int:
        return self._r.fileno()

    def set_assert(self, enabled: bool) -> None:
        self.assert_mode = enabled

    def set_pim(self, enabled: bool) -> None:
        self.pim_mode = self.assert_mode = enabled

    def add_vif(self, vif: int, ifindex: int, threshold: int = 1) -> None:
        self.log.append(("add_vif", self.table, vif, ifindex))
        if ifindex not in self.interfaces.values():
            raise NoSuchInterface(f"add VIF {vif}: no such interface")
        if len(self.vifs) >= 32 or vif >= 32:
            raise LimitExceeded("VIF table full")
        assert vif not in self.vifs, f"VIF {vif} already exists"
        self.vifs[vif] = (ifindex, threshold)

    def del_vif(self, vif: int) -> None:
        self.log.append(("del_vif", self.table, vif))
        if vif not in self.vifs:
            raise NoSuchInterface(f"delete VIF {vif}: no such VIF")
        del self.vifs[vif]

    def add_mfc(self, source, group, parent, outputs) -> None:
        source, group = _address(source), _address(group)
        self.log.append(("add_mfc", self.table, source, group, parent, dict(outputs)))
        if self.fail_add_mfc_after is not None:
            if self.fail_add_mfc_after == 0:
                raise KernelError("add MFC: Cannot allocate memory (errno 12)", 12)
            self.fail_add_mfc_after -= 1
        self.mfc[(source, group)] = (parent, dict(outputs))

    def del_mfc(self, source, group) -> None:
        source, group = _address(source), _address(group)
        self.log.append(("del_mfc", self.table, source, group))
        if (source, group) not in self.mfc:
            raise NotFound("no such route in the kernel")
        del self.mfc[(source, group)]

    def sg_counters(self, source, group) -> SgCounters:
        source, group = _address(source), _address(group)
        if (source, group) not in self.mfc:
            raise NotFound("no such route")
        return self.counters.get((source, group), SgCounters(0, 0, 0))

    def sg_counters_many(self, pairs) -> list:
        self.log.append(("sg_counters_many", self.table, len(pairs)))
        out = []
        for source, group in pairs:
            found = self.counters.get((_address(source), _address(group)), SgCounters(0, 0, 0))
            known = (_address(source), _address(group)) in self.mfc
            out.append((found.packets, found.bytes, found.wrong_if) if known else None)
        return out

    def vif_counters(self, vif: int) -> VifCounters:
        return VifCounters(0, 0, 0, 0)

    def queue_upcall(self, upcall) -> None:
        """As if the kernel queued an upcall: the engine's reader sees the fd ready."""
        self._upcalls.append(upcall)
        self._w.send(b"u")

    def read_upcalls(self) -> list:
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        upcalls, self._upcalls = self._upcalls, []
        self.kernel.was_read()
        return upcalls

    def close(self) -> None:
        self.closed = True
        self._r.close()
        self._w.close()


class StandInMemberships:
    """Keeps memberships as the kernel layer does and raises the same errors; `live`
    is the set of interface indexes that exist, `refuse` injects refusals."""

    def __init__(self, live: Container[int]) -> None:
        self.live = live
        self.joined: set[Membership] = set()
        self.refuse: dict[Membership, MfcError] = {}
        self.calls: list[tuple] = []
        self.closed = False

    def join(self, membership: Membership) -> None:
        self.calls.append(("join", membership))
        if membership in self.joined:
            raise AlreadyExists(f"join {membership}: already joined")
        if membership.ifindex not in self.live:
            raise NoSuchInterface(f"join {membership}: no interface has this index")
        if membership in self.refuse:
            raise self.refuse[membership]
        self.joined.add(membership)

    def leave(self, membership: Membership) -> None:
        self.calls.append(("leave", membership))
        if membership not in self.joined:
            raise NotFound(f"leave {membership}: not joined")
        self.joined.discard(membership)

    def leave_interface(self, ifindex: int) -> list[Membership]:
        self.calls.append(("leave_interface", ifindex))
        dropped = [m for m in self.joined if m.ifindex == ifindex]
        self.joined.difference_update(dropped)
        return dropped

    def close(self) -> None:
        self.closed = True
        self.joined.clear()

    version = 0  # nothing is kept across restarts here

    def adopt(self, recorded: dict) -> None:
        pass

    def settle_adopted(self) -> list:
        return []

    def holdings(self) -> dict:
        return {}


class FakeKernel:
    """Hands out FakeSockets; `busy` lists (family, table) owned by 'another router'."""

    def __init__(self, interfaces: dict[str, int] | None = None) -> None:
        self.interfaces = dict(interfaces or {"up0": 2, "down0": 3, "down1": 4})
        self.sockets: dict[tuple, FakeSocket] = {}
        self.log: list = []
        self.busy: set[tuple] = set()
        self.monitor: FakeMonitor | None = None
        self._read: asyncio.Event | None = None  # set when the engine read all queued

    # -- waiting for the engine ------------------------------------------------------------
    def unread(self) -> int:
        """Link events and upcalls queued that the engine has not read yet."""
        upcalls = sum(len(sock._upcalls) for sock in self.sockets.values() if not sock.closed)
        return upcalls + (len(self.monitor._events) if self.monitor is not None else 0)

    def was_read(self) -> None:
        if self._read is not None and not self.unread():
            self._read.set()

    async def all_read(self) -> None:
        """Return once the engine has read everything queued. It handles what it reads
        in the same loop callback, so by the time this returns that is done too."""
        while self.unread():
            self._read = asyncio.Event()
            await self._read.wait()
        self._read = None

    # -- the engine's kernel port (mfc_dbus.engine.port.KernelPort) ----------------------
    def adopted_tables(self) -> list:
        return []

    def open_table(self, family, table):
        from mfc_dbus.errors import KernelBusy

        if (family, table) in self.busy:
            raise KernelBusy(f"{family} table {table}: owned by another process")
        sock = self.sockets[(family, table)] = FakeSocket(family, table, self)
        return sock

    def read_entries(self, family) -> list:
        return []

    def watch_links(self):
        self.monitor = FakeMonitor(self)
        return self.monitor

    def interface_indexes(self) -> dict[str, int]:
        return dict(self.interfaces)

    def ifindex(self, name: str) -> int | None:
        return self.interfaces.get(name)

    def memberships(self) -> StandInMemberships:
        self.joined = StandInMemberships(self.interfaces.values())  # live: follows links
        return self.joined

    def link(self, kind: str, name: str, index: int) -> None:
        """Create or delete an interface, and queue its link event."""
        if kind == "new":
            self.interfaces[name] = index
        else:
            self.interfaces.pop(name, None)
            for sock in self.sockets.values():  # the kernel drops VIFs of a deleted device
                for vif, (ifindex, _) in list(sock.vifs.items()):
                    if ifindex == index:
                        del sock.vifs[vif]
        assert self.monitor is not None
        self.monitor.queue(LinkEvent(kind, name, index))


class FakeMonitor:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._events: list[LinkEvent] = []

    def fileno(self) -> int:
        return self._r.fileno()

    def queue(self, event: LinkEvent) -> None:
        self._events.append(event)
        self._w.send(b"x")

    def read_events(self) -> list[LinkEvent]:
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        events, self._events = self._events, []
        self.kernel.was_read()
        return events

    def close(self) -> None:
        self._r.close()
        self._w.close()
