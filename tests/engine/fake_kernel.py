"""A fake multicast-routing socket and link monitor: engine logic tests without root."""

from __future__ import annotations

import ipaddress
import socket

from mfc_dbus.errors import KernelError, LimitExceeded, NoSuchInterface, NotFound
from mfc_dbus.kernel import SgCounters, VifCounters
from mfc_dbus.kernel.netlink import LinkEvent


def _address(value):
    """The kernel layer takes packed addresses: keep ipaddress objects (easier to read
    in a test's assertions)."""
    return ipaddress.ip_address(value) if isinstance(value, bytes) else value


class FakeSocket:
    def __init__(self, family, table, interfaces: dict[str, int], log: list) -> None:
        self.family, self.table = family, table
        self.adopted = False  # a fresh MRT_INIT (the real one: True when taken from an fd)
        self.interfaces = interfaces  # the fake namespace's name -> ifindex (shared)
        self.vifs: dict[int, tuple[int, int]] = {}
        self.mfc: dict[tuple, tuple[int, dict[int, int]]] = {}
        self.log = log  # every call, in order, shared by all sockets of one fake kernel
        self.fail_add_mfc_after: int | None = None
        self.counters: dict[tuple, SgCounters] = {}  # (S, G) -> what sg_counters reads
        self._upcalls: list = []
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.closed = False

    def fileno(self) -> int:
        return self._r.fileno()

    def set_assert(self, enabled: bool) -> None:
        pass

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
        return upcalls

    def close(self) -> None:
        self.closed = True
        self._r.close()
        self._w.close()


class FakeKernel:
    """Hands out FakeSockets; `busy` lists (family, table) owned by 'another router'."""

    def __init__(self, interfaces: dict[str, int] | None = None) -> None:
        self.interfaces = dict(interfaces or {"up0": 2, "down0": 3, "down1": 4})
        self.sockets: dict[tuple, FakeSocket] = {}
        self.log: list = []
        self.busy: set[tuple] = set()
        self.monitor: FakeMonitor | None = None

    def open(self, family, table):
        from mfc_dbus.errors import KernelBusy

        if (family, table) in self.busy:
            raise KernelBusy(f"{family} table {table}: owned by another process")
        sock = self.sockets[(family, table)] = FakeSocket(family, table, self.interfaces, self.log)
        return sock

    def make_monitor(self):
        self.monitor = FakeMonitor()
        return self.monitor

    def lister(self) -> dict[str, int]:
        return dict(self.interfaces)

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

    def kwargs(self) -> dict:
        return {
            "kernel_factory": self.open,
            "link_monitor_factory": self.make_monitor,
            "interface_lister": self.lister,
            "interface_resolver": self.interfaces.get,
        }


class FakeMonitor:
    def __init__(self) -> None:
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
        return events

    def close(self) -> None:
        self._r.close()
        self._w.close()
