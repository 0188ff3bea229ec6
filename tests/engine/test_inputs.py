"""The input as part of a route's identity, against a fake kernel: several (*,G) and
prefix routes per group from different inputs, each learned flow taking the one it
arrives on; an exact (S,G) keeps one input unless replaced; removal names the input
when it must; the state file keeps every template (and reads the older journal)."""

from __future__ import annotations

import ipaddress
import json

import pytest
from engine_helpers import route
from fake_kernel import FakeKernel
from test_engine_unit import Harness, _journal

from mfc_dbus.errors import AlreadyExists, InvalidArgument, NotFound
from mfc_dbus.kernel import Upcall, UpcallKind
from mfc_dbus.model import Family, make_route_key

V4 = Family.IPV4
GROUP = ipaddress.ip_address("233.252.0.9")


@pytest.fixture
def h(tmp_path):
    # up0 and up1 are inputs, down0 the output
    harness = Harness(tmp_path / "state.json", FakeKernel({"up0": 2, "up1": 3, "down0": 4}))
    yield harness
    harness.close()


def arrive(h: Harness, source: str, on: str) -> None:
    """A packet of (source, GROUP) with no entry arrives on `on`: the kernel's NOCACHE."""
    vif = {v.interface: v.index for v in h.engine.list_vifs()}[on]
    upcall = Upcall(UpcallKind.NOCACHE, V4, 0, ipaddress.ip_address(source).packed,
                    GROUP.packed, vif)  # fmt: skip
    h.sock().queue_upcall(upcall)
    h.deliver()


def entry_input(h: Harness, source: str) -> str | None:
    """The input interface of the kernel's entry for (source, GROUP), None if none."""
    found = h.sock().mfc.get((ipaddress.ip_address(source), GROUP))
    if found is None:
        return None
    by_vif = {v.index: v.interface for v in h.engine.list_vifs()}
    return by_vif[found[0]]


def configured(h: Harness) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted(
        (*s.route.key.texts, s.route.input, s.route.outputs)
        for s in h.engine.list_routes()
        if s.state != "learned"
    )


def test_two_templates_of_one_group_coexist_and_flows_take_their_arrival_input(h):
    h.engine.add_route(route("*", str(GROUP), "up0", "down0"))
    h.engine.add_route(route("*", str(GROUP), "up1", "down0"))
    assert configured(h) == [
        ("*", str(GROUP), "up0", ("down0",)),
        ("*", str(GROUP), "up1", ("down0",)),
    ]
    arrive(h, "192.0.2.1", "up0")
    arrive(h, "198.51.100.1", "up1")
    assert entry_input(h, "192.0.2.1") == "up0"
    assert entry_input(h, "198.51.100.1") == "up1"
    learned = {(s.route.key.texts[0], s.route.input) for s in h.engine.list_routes()
               if s.state == "learned"}  # fmt: skip
    assert learned == {("192.0.2.1", "up0"), ("198.51.100.1", "up1")}
    # the same input again replaces that template's outputs, and only that one's
    h.engine.add_route(route("*", str(GROUP), "up1", "down0", "up0"))
    assert configured(h) == [
        ("*", str(GROUP), "up0", ("down0",)),
        ("*", str(GROUP), "up1", ("down0", "up0")),
    ]
    assert h.engine.route_count == 4


def test_removing_without_input_names_the_inputs_and_changes_nothing(h):
    h.engine.add_route(route("*", str(GROUP), "up0", "down0"))
    h.engine.add_route(route("*", str(GROUP), "up1", "down0"))
    arrive(h, "192.0.2.1", "up0")
    before = (configured(h), dict(h.sock().mfc))
    with pytest.raises(InvalidArgument, match=r"from 2 inputs: 'up0', 'up1'; name the input"):
        h.engine.remove_route(make_route_key("*", str(GROUP)))
    with pytest.raises(NotFound, match=r"from 'down0'.*configured from 'up0', 'up1'"):
        h.engine.remove_route(make_route_key("*", str(GROUP)), "down0")
    assert (configured(h), dict(h.sock().mfc)) == before


def test_removing_one_input_keeps_the_other_and_stops_the_removed_flow(h):
    h.engine.add_route(route("*", str(GROUP), "up0", "down0"))
    h.engine.add_route(route("*", str(GROUP), "up1", "down0"))
    arrive(h, "192.0.2.1", "up0")
    arrive(h, "198.51.100.1", "up1")
    removed = h.engine.remove_route(make_route_key("*", str(GROUP)), "up0")
    assert removed.input == "up0"
    assert configured(h) == [("*", str(GROUP), "up1", ("down0",))]
    assert entry_input(h, "198.51.100.1") == "up1"
    # up0's flow no longer forwards from up0 (it belongs to no template from there)
    assert entry_input(h, "192.0.2.1") != "up0"
    # with one template left, the input may be omitted
    h.engine.remove_route(make_route_key("*", str(GROUP)))
    assert configured(h) == []


def test_an_exact_route_from_another_input_is_already_exists_unless_replaced(h):
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up0", "down0"))
    with pytest.raises(AlreadyExists, match=r"exists from input 'up0'.*from 'up1'.*replace=true"):
        h.engine.add_route(route("192.0.2.1", str(GROUP), "up1", "down0"))
    with pytest.raises(AlreadyExists, match="'up0'"):
        h.engine.add_routes([route("192.0.2.2", str(GROUP), "up0", "down0"),
                             route("192.0.2.1", str(GROUP), "up1", "down0")])  # fmt: skip
    assert configured(h) == [("192.0.2.1", str(GROUP), "up0", ("down0",))]  # all or nothing
    assert entry_input(h, "192.0.2.1") == "up0"
    # the same input with other outputs still replaces in place
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up0", "down0", "up1"))
    assert h.sock().log[-1][0] == "add_mfc"
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up1", "down0"), replace=True)
    assert entry_input(h, "192.0.2.1") == "up1"
    key = make_route_key("192.0.2.1", str(GROUP))
    h.engine.add_routes([route("192.0.2.1", str(GROUP), "up0", "down0")], replace={key})
    assert configured(h) == [("192.0.2.1", str(GROUP), "up0", ("down0",))]
    with pytest.raises(NotFound, match="comes from 'up0', not 'up1'"):
        h.engine.remove_route(key, "up1")
    h.engine.remove_route(key, "up0")
    assert configured(h) == [] and h.sock().mfc == {}


def test_the_state_file_keeps_every_input_across_a_restart_and_a_crash(tmp_path):
    kernel = {"up0": 2, "up1": 3, "down0": 4}
    state = tmp_path / "state.json"
    first = Harness(state, FakeKernel(kernel))
    for input in ("up0", "up1"):
        first.engine.add_route(route("*", str(GROUP), input, "down0"))
        first.engine.add_route(route("2001:db8::/32", "ff3e::9", input, "down0", table=3))
    first.close()
    second = Harness(state, FakeKernel(kernel))
    assert len(configured(second)) == 4
    second.engine.remove_route(make_route_key("*", str(GROUP)), "up0")
    assert '"input": "up0"' in _journal(state).read_text()  # the unroute names it
    second.loop.close()  # no stop(): as if killed, so the journal is replayed
    third = Harness(state, FakeKernel(kernel))
    try:
        assert configured(third) == [
            ("*", str(GROUP), "up1", ("down0",)),
            ("2001:db8::/32", "ff3e::9", "up0", ("down0",)),
            ("2001:db8::/32", "ff3e::9", "up1", ("down0",)),
        ]
    finally:
        third.close()


def test_a_state_file_written_before_inputs_were_identity_still_loads(tmp_path):
    """0.1's files: one template per key, and journal unroute entries without input."""
    state = tmp_path / "state.json"
    state.write_text(
        '{"schema": 1, "generator": "mfc-dbus",\n "vifs": [],\n "routes": [\n'
        '{"source": "*", "group": "233.252.0.9", "input": "up0", "outputs": ["down0"]},\n'
        '{"source": "*", "group": "233.252.0.10", "input": "up0", "outputs": ["down0"]},\n'
        '{"source": "192.0.2.1", "group": "233.252.0.9", "input": "up0", "outputs": ["down0"]}'
        "\n]}\n"
    )
    _journal(state).write_text(
        json.dumps([{"unroute": {"source": "*", "group": "233.252.0.10", "table": 0}}]) + "\n"
    )
    h = Harness(state, FakeKernel({"up0": 2, "up1": 3, "down0": 4}))
    try:
        assert configured(h) == [
            ("*", str(GROUP), "up0", ("down0",)),
            ("192.0.2.1", str(GROUP), "up0", ("down0",)),
        ]
        h.engine.remove_route(make_route_key("*", str(GROUP)))  # the only one: no input
        assert len(configured(h)) == 1
    finally:
        h.close()


class InputRecorder:
    """A listener that writes down each route it is told of with its input."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, str]] = []

    def route_added(self, route) -> None:
        self.told.append(("added", str(route.key), route.input))

    def route_removed(self, route) -> None:
        self.told.append(("removed", str(route.key), route.input))

    def vif_added(self, vif) -> None:
        pass

    vif_removed = vif_added


def test_listeners_hear_which_input_a_route_left(h):
    """What a program mirroring routes from RouteAdded/RouteRemoved needs: a route is
    (source, group, input, table); an exact (S,G) moved to another input is removed
    from the old one, then added."""
    listener = InputRecorder()
    h.engine.add_listener(listener)
    exact = f"(192.0.2.1, {GROUP})"
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up0", "down0"))
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up1", "down0"), replace=True)
    h.engine.add_route(route("192.0.2.1", str(GROUP), "up1", "down0", "up0"))
    h.engine.add_route(route("*", str(GROUP), "up0", "down0"))
    h.engine.add_route(route("*", str(GROUP), "up1", "down0"))
    h.engine.remove_route(make_route_key("*", str(GROUP)), "up0")
    assert listener.told == [
        ("added", exact, "up0"),
        ("removed", exact, "up0"),
        ("added", exact, "up1"),
        ("added", exact, "up1"),  # outputs replaced in place: no removal
        ("added", f"(*, {GROUP})", "up0"),
        ("added", f"(*, {GROUP})", "up1"),
        ("removed", f"(*, {GROUP})", "up0"),
    ]
