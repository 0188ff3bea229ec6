"""Single-output edits, blocking routes and hairpin routes against a fake kernel: what
the engine asks of the kernel, what it tells its listeners, and the named errors."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from engine_helpers import route
from fake_kernel import FakeKernel

from mfc_dbus.engine import Engine
from mfc_dbus.errors import AlreadyExists, InvalidArgument, NotFound
from mfc_dbus.model import Family, Route, make_route_key

S, G = "10.0.0.1", "233.252.0.1"
KEY = make_route_key(S, G)
SG = (ipaddress.ip_address(S), ipaddress.ip_address(G))  # as the fake kernel keeps it


class Told:
    def __init__(self) -> None:
        self.added: list[tuple[str, ...]] = []

    def route_added(self, route: Route) -> None:
        self.added.append(route.outputs)

    def __getattr__(self, name):
        return lambda value: None


@pytest.fixture
def engine(tmp_path):
    kernel = FakeKernel({"up0": 2, "down0": 3, "down1": 4, "down2": 5})
    loop = asyncio.new_event_loop()
    engine = Engine(tmp_path / "state.json", kernel=kernel)
    loop.run_until_complete(engine.start())
    engine.sock = kernel.sockets[(Family.IPV4, 0)]  # type: ignore[attr-defined]
    yield engine
    loop.run_until_complete(engine.stop())
    loop.close()


def outs(engine) -> list[int]:
    """The ifindexes of the kernel entry (S, G)'s outputs."""
    sock = engine.sock
    parent, ttls = sock.mfc[SG]
    return sorted(sock.vifs[vif][0] for vif in ttls)


def test_add_outputs_keeps_the_others_and_replaces_in_place(engine):
    engine.add_route(route(S, G, "up0", "down0", persistent=False))
    told = Told()
    engine.add_listener(told)
    engine.sock.log.clear()
    after = engine.add_outputs(KEY, ["down1", "down0", "down1"])
    assert after.outputs == ("down0", "down1")  # down0 was there: a no-op for it
    assert after.persistent is False  # the rest of the route stays
    assert outs(engine) == [3, 4]
    # One add replaces the entry in place: never a delete, so down0 misses nothing.
    assert [c[0] for c in engine.sock.log if c[0].endswith("mfc")] == ["add_mfc"]
    assert told.added == [("down0", "down1")]


def test_removing_outputs_down_to_none_leaves_a_blocking_route(engine):
    engine.add_route(route(S, G, "up0", "down0", "down1"))
    assert engine.remove_outputs(KEY, ["down0", "down2"]).outputs == ("down1",)
    assert outs(engine) == [4]
    assert engine.remove_outputs(KEY, ["down1"]).outputs == ()
    assert engine.sock.mfc[SG][1] == {}  # installed, forwarding nowhere: dropped, counted
    (status,) = engine.list_routes()
    assert status.state == "installed" and status.route.outputs == ()
    assert "down1" not in {vif.interface for vif in engine.list_vifs()}  # its VIF freed


def test_a_no_op_changes_nothing_and_tells_nobody(engine):
    engine.add_route(route(S, G, "up0", "down0"))
    told = Told()
    engine.add_listener(told)
    engine.sock.log.clear()
    assert engine.add_outputs(KEY, ["down0"]).outputs == ("down0",)
    assert engine.remove_outputs(KEY, ["down1"]).outputs == ("down0",)
    assert engine.sock.log == [] and told.added == []


def test_output_edits_name_what_is_wrong(engine):
    with pytest.raises(NotFound, match=r"no route \(10.0.0.1, 233.252.0.1\) is configured"):
        engine.add_outputs(KEY, ["down0"])
    engine.add_route(route(S, G, "up0", "down0"))
    with pytest.raises(NotFound, match="comes from 'up0', not 'down1'"):
        engine.remove_outputs(KEY, ["down0"], input="down1")
    assert engine.add_outputs(KEY, ["down1"], input="up0").outputs == ("down0", "down1")
    with pytest.raises(InvalidArgument, match="AddOutputs: no output interface given"):
        engine.add_outputs(KEY, [])
    with pytest.raises(InvalidArgument, match="'a/b' is not valid"):
        engine.remove_outputs(KEY, ["down0", "a/b"])
    assert engine.list_routes()[0].route.outputs == ("down0", "down1")  # nothing changed


def test_with_a_template_per_input_the_input_says_which_route(engine):
    star = make_route_key("*", G)
    engine.add_route(route("*", G, "up0", "down0"))
    engine.add_route(route("*", G, "down1", "down0"))
    with pytest.raises(InvalidArgument, match="configured from 2 inputs: 'down1', 'up0'"):
        engine.add_outputs(star, ["down2"])
    assert engine.add_outputs(star, ["down2"], input="down1").outputs == ("down0", "down2")
    assert engine.remove_outputs(star, ["down0"], input="up0").outputs == ()
    shown = {(s.route.input, s.route.outputs) for s in engine.list_routes()}
    assert shown == {("up0", ()), ("down1", ("down0", "down2"))}


def test_a_configuration_files_route_is_changed_only_there(engine):
    engine.add_route(route(S, G, "up0", "down0"))
    engine._routes[KEY] = route(S, G, "up0", "down0", origin="/etc/mfc-dbus/a.conf:3")
    with pytest.raises(AlreadyExists, match="configured in /etc/mfc-dbus/a.conf:3"):
        engine.add_outputs(KEY, ["down1"])


@pytest.mark.parametrize("source", [S, "*", "10.0.0.0/8"])
def test_hairpin_routes_are_accepted_for_exact_and_template_routes(engine, source):
    """The kernel forwards an exact (S,G) entry back out of its input (ip_mr_forward
    skips the arrival VIF only for an origin-0 entry); templates install exact ones."""
    hairpin = route(source, G, "up0", "up0", "down0")
    engine.add_route(hairpin)
    assert engine.list_routes()[0].route.outputs == ("up0", "down0")
    if source == S:
        parent, ttls = engine.sock.mfc[SG]
        assert parent in ttls  # the input VIF is an output of the entry


def test_an_output_given_twice_is_still_refused(engine):
    with pytest.raises(InvalidArgument, match="lists output down0 more than once"):
        engine.add_route(route(S, G, "up0", "down0", "down0"))
