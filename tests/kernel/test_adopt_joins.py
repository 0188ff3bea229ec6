"""The kernel layer's part of join sockets that outlive a restart: what a socket
holds is read back from the kernel (getsockopt MCAST_MSFILTER), sockets passed back
are adopted with what their record names and they still hold, a join then wanted
takes a membership over without a syscall, and what nobody wants is left; a socket
nothing explains is closed and removed from the store."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from mfc_dbus.errors import NotFound
from mfc_dbus.kernel.joinsocket import held_sources
from mfc_dbus.kernel.membership import Membership, Memberships
from mfc_dbus.model import Family
from mfc_lab import Lab, in_netns
from tests.kernel.test_membership import _kernel_groups

GROUPS = {Family.IPV4: ("233.252.0.70", "233.252.0.71", "232.1.1.7"),
          Family.IPV6: ("ff3e::70", "ff3e::71", "ff3e::4:7")}  # fmt: skip
SOURCES = {Family.IPV4: ("192.0.2.1", "192.0.2.2"), Family.IPV6: ("2001:db8::1", "2001:db8::2")}


def _m(ifindex: int, group: str, source: str | None = None) -> Membership:
    return Membership(
        ifindex,
        ipaddress.ip_address(group),
        None if source is None else ipaddress.ip_address(source),
    )


class Store:
    """systemd's fd store, as the kernel layer sees it: copies kept by name."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.forgotten: list[str] = []

    def keep(self, fd: int, name: str) -> bool:
        self.fds[name] = os.dup(fd)
        return True

    def forget(self, name: str) -> None:
        self.forgotten.append(name)
        os.close(self.fds.pop(name))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=str)
def test_what_a_join_socket_holds_is_read_back(lab: Lab, family: Family) -> None:
    any_group, other, ssm = GROUPS[family]
    with in_netns(lab.rtr), Memberships() as joins:
        index = socket.if_nametoindex("up0")
        joins.join(_m(index, any_group))
        for source in SOURCES[family]:
            joins.join(_m(index, ssm, source))
        [sock] = joins.sockets(family)
        assert held_sources(sock, family, index, ipaddress.ip_address(any_group)) is None
        assert held_sources(sock, family, index, ipaddress.ip_address(ssm)) == {
            ipaddress.ip_address(source) for source in SOURCES[family]
        }
        with pytest.raises(NotFound):
            held_sources(sock, family, index, ipaddress.ip_address(other))


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=str)
def test_passed_join_sockets_are_adopted_and_settled(lab: Lab, family: Family) -> None:
    any_group, unwanted, ssm = GROUPS[family]
    store = Store()
    try:
        with in_netns(lab.rtr):
            index = socket.if_nametoindex("up0")
            first = Memberships(keep=store.keep, forget=store.forget)
            wanted = [_m(index, any_group), _m(index, ssm, SOURCES[family][0])]
            for membership in [*wanted, _m(index, unwanted)]:
                first.join(membership)
            recorded = first.holdings()
            [name] = recorded
            stranger = socket.socket(socket.AF_INET if family is Family.IPV4 else socket.AF_INET6,
                                     socket.SOCK_DGRAM)  # fmt: skip
            stranger_name = name.rsplit("-", 1)[0] + "-9"  # no record names it
            store.keep(stranger.fileno(), stranger_name)
            stranger.close()
            first.sockets(family)[0].close()  # the process ends: only the store holds them
            shown = _kernel_groups(lab.rtr, family.value, "up0")
            assert {any_group, unwanted, ssm} <= shown

            passed = {key: os.dup(fd) for key, fd in store.fds.items()}
            second = Memberships(passed, store.keep, store.forget)
            second.adopt(recorded)
            assert store.forgotten == [stranger_name]
            for membership in wanted:
                second.join(membership)  # taken over: no AlreadyExists, nothing sent
            assert second.settle_adopted() == [_m(index, unwanted)]
            shown = _kernel_groups(lab.rtr, family.value, "up0")
            assert any_group in shown and ssm in shown and unwanted not in shown
            assert sorted(second.holdings()[name], key=str) == sorted(wanted, key=str)
            joined = _m(index, unwanted)
            second.join(joined)  # a new join goes to the adopted socket, stored once
            assert set(second.holdings()) == {name}
            second.close()  # leaves everything, and the stored copies go too
            assert name in store.forgotten
            assert not {any_group, ssm, unwanted} & _kernel_groups(lab.rtr, family.value, "up0")
    finally:
        store.close()
