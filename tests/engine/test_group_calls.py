"""Group joins through the engine's public methods: listeners told, leases, the
configuration files' joins protected, persistent joins in the state file (snapshot and
journal) across a restart and a Reload, and an older state file without joins."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fake_kernel import FakeKernel

from mfc_dbus.engine import Engine
from mfc_dbus.engine.joins import Join, JoinState, make_join_key
from mfc_dbus.engine.stateparse import parse
from mfc_dbus.errors import AlreadyExists, InvalidArgument, NotFound
from mfc_dbus.model import Family

ASM = make_join_key("up0", "", "233.252.0.1")
SSM = make_join_key("down0", "192.0.2.1", "232.1.1.1", 3)


class Told:
    """An EngineListener that keeps what it was told about groups."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def group_joined(self, join: Join) -> None:
        self.events.append(("joined", str(join.key)))

    def group_left(self, join: Join) -> None:
        self.events.append(("left", str(join.key)))

    def __getattr__(self, name: str):  # routes and VIFs: not the subject here
        return lambda *args: None


class Service:
    def __init__(self, tmp_path: Path, config: str | None = None) -> None:
        self.state = tmp_path / "state.json"
        self.config = tmp_path / "mfc-dbus.conf"
        if config is not None:
            self.config.write_text(config)
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(
            self.state,
            kernel=FakeKernel({"up0": 2, "down0": 3, "down1": 4}),
            config_file=self.config if config is not None else None,
        )
        self.told = Told()
        self.engine.add_listener(self.told)
        self.loop.run_until_complete(self.engine.start())

    def joins(self) -> dict[str, tuple]:
        return {
            str(s.join.key): (s.state, s.join.persistent, s.join.owner, s.join.origin)
            for s in self.engine.list_groups()
        }

    def stop(self) -> None:
        self.loop.run_until_complete(self.engine.stop())
        self.loop.close()


@pytest.fixture
def service(tmp_path):
    made = Service(tmp_path)
    yield made
    made.stop()


def test_join_leave_and_list_tell_the_listeners(service):
    assert service.engine.join_group(Join(ASM)).state is JoinState.JOINED
    service.engine.join_group(Join(SSM, persistent=False))
    assert service.engine.group_count == 2
    assert [s.join.key for s in service.engine.list_groups(Family.IPV4, 3)] == [SSM]
    assert service.engine.leave_group(ASM).key == ASM
    with pytest.raises(NotFound, match="no join"):
        service.engine.leave_group(ASM)
    assert service.told.events == [
        ("joined", str(ASM)), ("joined", str(SSM)), ("left", str(ASM)),
    ]  # fmt: skip


def test_joining_again_replaces_the_options(service):
    service.engine.join_group(Join(ASM))
    service.engine.join_group(Join(ASM, persistent=False, owner=":1.7"))
    assert service.joins() == {str(ASM): (JoinState.JOINED, False, ":1.7", None)}
    assert service.engine.lease_owners() == {":1.7"}


def test_lease_joins_end_with_their_owner(service):
    service.engine.join_group(Join(ASM, persistent=False, owner=":1.7"))
    service.engine.join_group(Join(SSM))
    service.engine.remove_routes_owned_by(":1.7")
    assert list(service.joins()) == [str(SSM)]
    assert ("left", str(ASM)) in service.told.events


def test_a_configuration_files_join_cannot_be_replaced_or_left(tmp_path):
    made = Service(tmp_path, config="mgroup from up0 group 233.252.0.1\n")
    try:
        origin = f"{made.config}:1"
        assert made.joins() == {str(ASM): (JoinState.JOINED, False, None, origin)}
        with pytest.raises(AlreadyExists, match=f"configured in {origin}"):
            made.engine.join_group(Join(ASM))
        with pytest.raises(InvalidArgument, match=f"configured in {origin}"):
            made.engine.leave_group(ASM)
        assert made.engine.group_count == 1
    finally:
        made.stop()
    assert "233.252.0.1" not in made.state.read_text()  # the file's joins are not saved


def test_persistent_joins_come_back_after_a_restart(tmp_path):
    first = Service(tmp_path)
    first.engine.join_group(Join(ASM))
    first.engine.join_group(Join(SSM))
    first.engine.join_group(Join(make_join_key("down1", "", "ff3e::1"), persistent=False))
    first.engine.join_group(Join(make_join_key("down1", "", "ff3e::2"), owner=":1.9",
                                 persistent=False))  # fmt: skip
    first.engine.leave_group(ASM)
    journal = first.state.with_name("state.json.journal").read_text()
    assert '"join"' in journal and '"unjoin"' in journal  # each change written at once
    first.stop()
    assert json.loads(first.state.read_text())["joins"] == [
        {"interface": "down0", "source": "192.0.2.1", "group": "232.1.1.1", "table": 3}
    ]
    second = Service(tmp_path)
    try:
        assert second.joins() == {str(SSM): (JoinState.JOINED, True, None, None)}
    finally:
        second.stop()


def test_a_journal_alone_brings_joins_back(tmp_path):
    journal = tmp_path / "state.json.journal"
    journal.write_text(
        '[{"join": {"interface": "up0", "source": "*", "group": "233.252.0.1"}}]\n'
        '[{"join": {"interface": "down0", "source": "192.0.2.1", "group": "232.1.1.1", '
        '"table": 3}}]\n'
        '[{"unjoin": {"interface": "up0", "source": "*", "group": "233.252.0.1"}}]\n'
    )
    made = Service(tmp_path)
    try:
        assert list(made.joins()) == [str(SSM)]
    finally:
        made.stop()


def test_reload_makes_the_persistent_joins_the_state_files(service):
    service.engine.join_group(Join(ASM))
    service.engine.join_group(Join(make_join_key("down1", "", "ff3e::1"), persistent=False))
    service.loop.run_until_complete(service.engine.stop())  # writes the snapshot
    service.state.write_text(service.state.read_text().replace('"233.252.0.1"', '"233.252.0.2"'))
    service.engine = Engine(service.state, kernel=FakeKernel({"up0": 2, "down0": 3, "down1": 4}))
    service.engine.add_listener(service.told)
    service.loop.run_until_complete(service.engine.start())
    service.engine.join_group(Join(make_join_key("down1", "", "ff3e::3"), persistent=False))
    service.state.write_text(service.state.read_text().replace('"233.252.0.2"', '"233.252.0.9"'))
    service.engine.reload()
    joins = service.joins()
    assert str(make_join_key("up0", "", "233.252.0.9")) in joins
    assert str(make_join_key("up0", "", "233.252.0.2")) not in joins
    assert str(make_join_key("down1", "", "ff3e::3")) in joins  # not persistent: kept


def test_an_older_state_file_without_joins_loads():
    saved = parse('{"schema": 1, "vifs": [], "routes": []}')
    assert saved.joins == ()


def test_a_bad_saved_join_names_its_place():
    with pytest.raises(ValueError, match="join #1: field 'group' must be a str"):
        parse('{"schema": 1, "joins": [{"interface": "eth0", "group": 5}]}')
    with pytest.raises(InvalidArgument, match="not a multicast address"):
        parse('{"schema": 1, "joins": [{"interface": "eth0", "group": "10.0.0.1"}]}')
