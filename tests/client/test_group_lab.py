"""`mfc-dbus group join|leave|show` against the real service, behind a real IGMP/MLD
snooping bridge (mfc_lab.bridge): the router's port gets a group only after the join,
and no more after the leave.

One snooping lab, one private system bus with python-dbusmock's polkitd, and mfc-dbusd
started by bus activation inside the router namespace, shared by the module. A packet
socket at the router's port is the independent witness; every "did not arrive" is
read after a marker sent later from the same sender did arrive (Prober).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from snooping_service import SnoopingService, snooping_service

from mfc_dbus.names import ACTION_MANAGE_GROUPS, ACTION_MANAGE_ROUTES, BUS_NAME
from mfc_lab.bridge import SOURCES, Flow, Prober, SnoopingLab
from mfc_lab.polkit import ThrowawayUser
from mfc_lab.users import client_argv, client_env

pytestmark = pytest.mark.root

FAMILIES = ["ipv4", "ipv6"]
GROUPS = {"ipv4": "232.1.2.{}", "ipv6": "ff3e::2:{:x}"}
IF = SnoopingLab.interface  # the router's port towards the bridge


def group(family: str, n: int) -> str:
    return GROUPS[family].format(n)


class World(SnoopingService):
    def joins(self) -> list[tuple[str, str, str, str]]:
        shown = json.loads(self.ok("-j", "group", "show"))
        return sorted((j["interface"], j["source"], j["group"], j["state"]) for j in shown)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with snooping_service(World) as created:
        yield created


class Watch:
    """The capture at the router's port and a prober, for one family."""

    def __init__(self, lab: SnoopingLab, family: str) -> None:
        self.family = family
        self.capture = lab.capture()
        self.prober: Prober = lab.prober(self.capture)
        self.flooded = self.prober.marker(family)

    def source(self, n: int = 0) -> str:
        return SOURCES[self.family][n]

    def wait_for_snooping(self) -> None:
        self.prober.wait_for_snooping(Flow(self.source(), group(self.family, 250)), self.flooded)

    def never_arrives(self, flows: list[Flow], marker: Flow, rounds: int = 5) -> None:
        self.prober.never_arrives(flows, marker, rounds)

    def close(self) -> None:
        self.prober.close()
        self.capture.close()


@pytest.fixture(params=FAMILIES)
def watch(request, world: World) -> Iterator[Watch]:
    world.polkit.set_allowed([])
    created = Watch(world.lab, request.param)
    try:
        created.wait_for_snooping()
        yield created
    finally:
        created.close()
        for join in json.loads(world.cli("-j", "group", "show").stdout or "[]"):
            world.cli("group", "leave", join["interface"], join["group"],
                      "source", join["source"], "table", str(join["table"]))  # fmt: skip


def test_join_brings_the_group_to_the_router_and_leave_stops_it(world: World, watch: Watch):
    stream = Flow(watch.source(), group(watch.family, 1))
    kept = Flow(watch.source(), group(watch.family, 2))
    watch.never_arrives([stream, kept], watch.flooded)

    world.ok("group", "join", IF, stream.group)
    world.ok("group", "join", IF, kept.group, "temporary")
    watch.prober.until(lambda arrived: {stream, kept} <= arrived, [stream, kept], watch.flooded)
    assert {(None, stream.group), (None, kept.group)} <= world.lab.router_port_groups()
    assert world.joins() == [
        (IF, "*", stream.group, "joined"), (IF, "*", kept.group, "joined"),
    ]  # fmt: skip

    world.ok("group", "leave", IF, stream.group)
    # The bridge asks for remaining members before it stops: wait for that, with the
    # still-joined group as the marker that proves the path works.
    watch.prober.until(lambda arrived: stream not in arrived, [stream], kept)
    watch.never_arrives([stream], kept)
    assert (None, stream.group) not in world.lab.router_port_groups()
    assert world.joins() == [(IF, "*", kept.group, "joined")]


def test_a_source_specific_join_receives_only_its_source(world: World, watch: Watch):
    wanted = Flow(watch.source(0), group(watch.family, 3))
    other = Flow(watch.source(1), wanted.group)
    other_flooded = Flow(other.source, watch.flooded.group)  # the other source does send
    world.ok("group", "join", IF, wanted.group, "source", wanted.source)
    watch.prober.until(lambda arrived: wanted in arrived, [wanted], watch.flooded)
    assert (wanted.source, wanted.group) in world.lab.router_port_groups()

    first = watch.prober.round + 1
    watch.never_arrives([other], wanted)
    for _ in range(3):
        assert other_flooded in watch.prober.probe([other, other_flooded], wanted)
    assert other not in watch.prober.arrived([other], first, watch.prober.round)


def test_a_caller_without_the_action_is_refused(world: World, watch: Watch):
    env = client_env(world.bus)
    join = [*client_argv(), "group", "join", IF, group(watch.family, 4)]
    with ThrowawayUser() as user:
        result = user.run(join, env=env, cwd="/", stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout) == (4, ""), result.stderr
        assert result.stderr == (
            "mfc-dbus: not authorized to manage group joins (polkit action "
            "org.mfc.Forwarding1.manage-groups); ask an administrator, or see "
            "/usr/share/doc/mfc-dbus/examples/50-org.mfc.Forwarding1.rules\n"
        )
        world.polkit.set_allowed([ACTION_MANAGE_ROUTES])  # another action is not enough
        result = user.run(join, env=env, cwd="/", stdin=subprocess.DEVNULL)
        assert result.returncode == 4 and "manage-groups" in result.stderr
        assert world.joins() == []
        world.polkit.set_allowed([ACTION_MANAGE_GROUPS])
        result = user.run(join, env=env, cwd="/", stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stderr) == (0, "")
    assert world.joins() == [(IF, "*", group(watch.family, 4), "joined")]


def test_a_persistent_join_comes_back_after_a_restart(world: World, watch: Watch):
    saved = Flow(watch.source(), group(watch.family, 5))
    temporary = Flow(watch.source(), group(watch.family, 6))
    world.ok("group", "join", IF, saved.group)
    world.ok("group", "join", IF, temporary.group, "temporary")
    both = [saved, temporary]
    watch.prober.until(lambda arrived: set(both) <= arrived, both, watch.flooded)

    world.bus.stop_owner(BUS_NAME)  # the kernel leaves every group of the closed sockets
    watch.prober.until(lambda arrived: not arrived & set(both), both, watch.flooded)
    assert json.loads(world.state.read_text())["joins"] == [
        {"interface": IF, "source": "*", "group": saved.group}
    ]

    assert world.joins() == [(IF, "*", saved.group, "joined")]  # activates the service
    watch.prober.until(lambda arrived: saved in arrived, both, watch.flooded)
    watch.never_arrives([temporary], saved)


def test_fifty_joins_on_one_interface_through_the_service(world: World, watch: Watch, tmp_path):
    """More groups than one IPv4 socket holds (20): the service opens more sockets."""
    flows = [Flow(watch.source(), group(watch.family, 100 + n)) for n in range(50)]
    config = tmp_path / "fifty.conf"
    config.write_text("".join(f"mgroup from {IF} group {f.group}\n" for f in flows))
    world.ok("config", "import", str(config))
    assert world.joins() == sorted((IF, "*", f.group, "joined") for f in flows)
    watch.prober.until(lambda arrived: set(flows) <= arrived, flows, watch.flooded)
    assert {(None, f.group) for f in flows} <= world.lab.router_port_groups()
