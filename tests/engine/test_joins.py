"""The join manager against a stand-in for the kernel's memberships (no root): prefixes,
wildcards, shared memberships, hotplug, all-or-nothing adds, limits and messages."""

from __future__ import annotations

import ipaddress

import pytest
from fake_kernel import StandInMemberships

from mfc_dbus.engine import joins as joins_module
from mfc_dbus.engine.joins import (
    MAX_MEMBERSHIPS_PER_JOIN,
    Join,
    JoinKey,
    JoinManager,
    JoinState,
    make_join_key,
)
from mfc_dbus.errors import (
    AlreadyExists,
    InvalidArgument,
    KernelError,
    LimitExceeded,
    NotFound,
)
from mfc_dbus.kernel.membership import Membership
from mfc_dbus.model import Family

INTERFACES = {"eth0": 2, "eth1": 3, "veth0": 4}


@pytest.fixture
def kernel() -> StandInMemberships:
    return StandInMemberships(set(INTERFACES.values()))


@pytest.fixture
def manager(kernel) -> JoinManager:
    return JoinManager(kernel, INTERFACES)


def member(ifindex: int, group: str, source: str | None = None) -> Membership:
    return Membership(
        ifindex,
        ipaddress.ip_address(group),
        ipaddress.ip_address(source) if source is not None else None,
    )


def join(interface: str, group: str, source: str = "*", table: int = 0, **kwargs) -> Join:
    return Join(make_join_key(interface, source, group, table), **kwargs)


# -- joining and leaving ----------------------------------------------------------------------
def test_a_join_on_a_present_interface_joins_the_kernel(manager, kernel):
    status = manager.add(join("eth0", "232.1.1.1"))
    assert status.state is JoinState.JOINED
    assert status.interfaces == ("eth0",)
    assert status.memberships == 1
    assert kernel.joined == {member(2, "232.1.1.1")}


def test_a_source_specific_join_carries_its_source(manager, kernel):
    manager.add(join("eth1", "ff3e::1", source="2001:db8::7"))
    assert kernel.joined == {member(3, "ff3e::1", "2001:db8::7")}


def test_leave_leaves_the_kernel_and_forgets_the_join(manager, kernel):
    key = manager.add(join("eth0", "232.1.1.1")).join.key
    assert manager.remove(key).key == key
    assert kernel.joined == set()
    assert manager.list_joins() == []


def test_a_duplicate_join_is_already_exists_naming_it(manager):
    manager.add(join("eth0", "232.1.1.1"))
    with pytest.raises(AlreadyExists, match=r"\(\*, 232\.1\.1\.1\) on eth0 exists already"):
        manager.add(join("eth0", "232.1.1.1", persistent=False))


def test_leaving_what_was_never_joined_is_not_found_naming_it(manager):
    with pytest.raises(NotFound, match=r"no join \(192\.0\.2\.1, 232\.1\.1\.1\) on eth0"):
        manager.remove(make_join_key("eth0", "192.0.2.1", "232.1.1.1"))


# -- prefixes ---------------------------------------------------------------------------------
def test_a_group_prefix_joins_every_group_it_covers(manager, kernel):
    status = manager.add(join("eth0", "225.1.2.0/30"))
    assert status.memberships == 4
    assert kernel.joined == {member(2, f"225.1.2.{n}") for n in range(4)}


def test_source_and_group_prefixes_join_every_pair(manager, kernel):
    manager.add(join("eth0", "232.1.1.0/31", source="192.0.2.0/31"))
    assert kernel.joined == {
        member(2, f"232.1.1.{g}", f"192.0.2.{s}") for g in range(2) for s in range(2)
    }


def test_a_prefix_up_to_the_bound_is_accepted_and_beyond_it_refused_by_name(manager, kernel):
    assert MAX_MEMBERSHIPS_PER_JOIN == 1024
    assert manager.add(join("eth0", "239.1.0.0/22")).memberships == 1024
    with pytest.raises(LimitExceeded, match=r"stands for 2048 memberships.*at most 1024"):
        join("eth0", "239.2.0.0/21")
    with pytest.raises(LimitExceeded, match="stands for 2048"):
        join("eth0", "232.1.1.0/24", source="192.0.2.0/29")
    assert len(kernel.joined) == 1024


def test_overlapping_joins_share_memberships_until_the_last_leaves(manager, kernel):
    wide = manager.add(join("eth0", "225.1.2.0/30")).join.key
    narrow = manager.add(join("eth0", "225.1.2.1")).join.key
    other_table = manager.add(join("eth0", "225.1.2.1", table=7)).join.key
    joins_made = [call for call in kernel.calls if call[0] == "join"]
    assert len(joins_made) == 4  # the shared membership was joined once
    manager.remove(wide)
    assert kernel.joined == {member(2, "225.1.2.1")}
    manager.remove(narrow)
    assert kernel.joined == {member(2, "225.1.2.1")}
    manager.remove(other_table)
    assert kernel.joined == set()


def test_any_source_and_source_specific_joins_of_one_group_are_separate(manager, kernel):
    manager.add(join("eth0", "232.1.1.1"))
    manager.add(join("eth0", "232.1.1.1", source="192.0.2.1"))
    assert kernel.joined == {member(2, "232.1.1.1"), member(2, "232.1.1.1", "192.0.2.1")}


# -- interfaces that come and go -------------------------------------------------------------
def test_a_join_waits_for_its_interface_and_follows_it(manager, kernel):
    key = manager.add(join("eth9", "232.1.1.1")).join.key
    assert manager.get(key).state is JoinState.WAITING
    assert kernel.joined == set()

    kernel.live.add(10)
    changed = manager.interface_appeared("eth9", 10)
    assert [(s.join.key, s.state) for s in changed] == [(key, JoinState.JOINED)]
    assert kernel.joined == {member(10, "232.1.1.1")}

    kernel.live.discard(10)
    changed = manager.interface_disappeared("eth9", 10)
    assert [(s.join.key, s.state) for s in changed] == [(key, JoinState.WAITING)]
    assert kernel.joined == set()
    assert ("leave_interface", 10) in kernel.calls

    kernel.live.add(11)  # back with another index
    manager.interface_appeared("eth9", 11)
    assert kernel.joined == {member(11, "232.1.1.1")}


def test_a_state_change_of_a_joined_interface_changes_nothing(manager, kernel):
    manager.add(join("eth0", "232.1.1.1"))
    calls = len(kernel.calls)
    assert manager.interface_appeared("eth0", 2) == []
    assert len(kernel.calls) == calls


def test_an_event_for_an_index_the_name_no_longer_has_is_ignored(manager, kernel):
    manager.add(join("eth0", "232.1.1.1"))
    assert manager.interface_disappeared("eth0", 99) == []
    assert kernel.joined == {member(2, "232.1.1.1")}


def test_a_renamed_interface_takes_its_memberships_to_joins_of_the_new_name(manager, kernel):
    old = manager.add(join("eth0", "232.1.1.1")).join.key
    new = manager.add(join("wan0", "232.1.1.2")).join.key
    changed = manager.interface_appeared("wan0", 2)  # eth0 renamed wan0: same index
    assert {s.join.key: s.state for s in changed} == {
        old: JoinState.WAITING,
        new: JoinState.JOINED,
    }
    assert kernel.joined == {member(2, "232.1.1.2")}


def test_a_wildcard_join_covers_every_matching_interface_now_and_later(manager, kernel):
    key = manager.add(join("eth+", "232.1.1.1")).join.key
    status = manager.get(key)
    assert status.interfaces == ("eth0", "eth1")  # not veth0
    assert status.memberships == 2
    kernel.live.add(12)
    manager.interface_appeared("eth2", 12)
    assert manager.get(key).interfaces == ("eth0", "eth1", "eth2")
    assert kernel.joined == {member(i, "232.1.1.1") for i in (2, 3, 12)}
    assert [s.join.key for s in manager.list_joins(interface="eth7")] == [key]
    assert manager.list_joins(interface="veth0") == []


def test_an_interface_gone_before_its_event_makes_the_join_wait(manager, kernel):
    kernel.live.discard(2)  # removed; RTM_DELLINK not read yet
    status = manager.add(join("eth0", "232.1.1.0/31"))
    assert status.state is JoinState.WAITING
    assert kernel.joined == set()


# -- failures ---------------------------------------------------------------------------------
def test_a_refused_add_leaves_nothing_behind(manager, kernel):
    kernel.refuse[member(3, "232.1.1.2")] = KernelError("join: Cannot allocate memory", 12)
    with pytest.raises(KernelError, match="Cannot allocate memory"):
        manager.add(join("eth+", "232.1.1.0/30"))  # eth0 joins, then eth1 fails half-way
    assert kernel.joined == set()
    assert manager.list_joins() == []


def test_a_refusal_on_hotplug_is_reported_and_retried(manager, kernel):
    key = manager.add(join("eth+", "232.1.1.1")).join.key
    kernel.live.add(12)
    kernel.refuse[member(12, "232.1.1.1")] = KernelError("join: No buffer space", 105)
    [status] = manager.interface_appeared("eth2", 12)
    assert status.join.key == key
    assert status.state is JoinState.FAILED
    assert status.error == "eth2: join: No buffer space"
    assert status.interfaces == ("eth0", "eth1")
    assert manager.interface_appeared("eth2", 12) == []  # refused again: no change

    del kernel.refuse[member(12, "232.1.1.1")]
    [status] = manager.interface_appeared("eth2", 12)  # the next RTM_NEWLINK retries
    assert status.state is JoinState.JOINED
    assert status.error is None


def test_the_total_bound_refuses_a_join_that_would_pass_it(manager, kernel, monkeypatch):
    monkeypatch.setattr(joins_module, "MAX_MEMBERSHIPS", 6)
    manager.add(join("eth0", "232.1.1.0/30"))
    manager.add(join("eth0", "232.1.1.0/31", table=3))  # shared: needs nothing more
    with pytest.raises(LimitExceeded, match=r"needs 4 more memberships; 4 of at most 6"):
        manager.add(join("eth1", "232.1.1.0/30"))
    assert len(kernel.joined) == 4


# -- what a join may be -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "interface, source, group, message",
    [
        ("eth0", "*", "10.1.1.1", "not a multicast address"),
        ("eth0", "*", "224.0.0.5", "link-local"),
        ("eth0", "*", "ff02::5", "link-local scope"),
        ("eth0", "232.1.1.9", "232.1.1.1", "multicast address"),
        ("eth0", "2001:db8::1", "232.1.1.1", "different families"),
        ("eth0", "0.0.0.0/30", "232.1.1.1", "covers the unspecified address"),
        ("eth 0", "*", "232.1.1.1", "no spaces"),
        ("eth/0+", "*", "232.1.1.1", "no spaces, '/' or ':'"),
        ("an-interface-name", "*", "232.1.1.1", "too long"),
    ],
)
def test_a_bad_join_is_refused_saying_what_is_wrong(interface, source, group, message):
    with pytest.raises(InvalidArgument, match=message):
        make_join_key(interface, source, group)


@pytest.mark.parametrize("source", ["", "*", "0.0.0.0", "0.0.0.0/0"])
def test_every_any_source_form_means_any_source(source):
    assert make_join_key("eth0", source, "232.1.1.1").source is None


def test_the_unspecified_ipv6_source_means_any_source():
    key = make_join_key("eth0", "::", "ff3e::1")
    assert key.source is None
    assert key.family is Family.IPV6


def test_a_plus_alone_is_an_interface_name_not_every_interface():
    key = make_join_key("+", "*", "232.1.1.1")
    assert key.matches("+")
    assert not key.matches("eth0")


def test_a_key_made_directly_is_checked_too():
    with pytest.raises(InvalidArgument, match="not an ipv6 address or prefix"):
        JoinKey("eth0", Family.IPV6, 0, None, ipaddress.ip_network("232.1.1.1"))
    with pytest.raises(InvalidArgument, match="table -1 is not valid"):
        JoinKey("eth0", Family.IPV4, -1, None, ipaddress.ip_network("232.1.1.1"))


def test_the_default_table_of_each_family_is_table_0():
    assert make_join_key("eth0", "*", "232.1.1.1", 253).table == 0
    assert make_join_key("eth0", "*", "ff3e::1", 254).table == 0


# -- leases, flush, listing, persistence -----------------------------------------------------
def test_the_joins_of_a_lease_holder_go_with_it(manager, kernel):
    manager.add(join("eth0", "232.1.1.1", owner=":1.42"))
    kept = manager.add(join("eth0", "232.1.1.2", owner=":1.43")).join
    assert [j.key for j in manager.remove_owned_by(":1.42")] == [
        make_join_key("eth0", "*", "232.1.1.1")
    ]
    assert manager.joins() == [kept]
    assert kernel.joined == {member(2, "232.1.1.2")}


def test_flush_selects_by_family_and_table(manager, kernel):
    manager.add(join("eth0", "232.1.1.1"))
    manager.add(join("eth0", "232.1.1.1", table=5))
    manager.add(join("eth0", "ff3e::1"))
    removed = manager.flush(family=Family.IPV4, table=5)
    assert [j.key.table for j in removed] == [5]
    assert [str(s.join.key) for s in manager.list_joins(family=Family.IPV4)] == [
        "(*, 232.1.1.1) on eth0"
    ]
    assert len(manager.flush()) == 2
    assert kernel.joined == set()


def test_joins_lists_persistent_and_transient_joins_with_their_flags(manager):
    manager.add(join("eth0", "232.1.1.1"))
    manager.add(join("eth0", "232.1.1.2", persistent=False))
    assert [(str(j.key), j.persistent) for j in manager.joins()] == [
        ("(*, 232.1.1.1) on eth0", True),
        ("(*, 232.1.1.2) on eth0", False),
    ]


def test_close_leaves_every_group_and_keeps_the_desired_joins(manager, kernel):
    manager.add(join("eth0", "232.1.1.0/30"))
    manager.close()
    assert kernel.closed
    assert manager.membership_count == 0
    assert len(manager.joins()) == 1


def test_a_key_prints_as_the_user_wrote_it():
    key = make_join_key("eth0", "192.0.2.0/31", "232.1.1.0/30", 9)
    assert str(key) == "(192.0.2.0/31, 232.1.1.0/30) on eth0 table 9"
