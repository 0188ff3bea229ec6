"""The administrator's configuration files in the engine: applied at start and on
reload as a difference, origin-marked, kept out of the state file, and protected from
D-Bus changes."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest
from fake_kernel import FakeKernel

from mfc_dbus.config import ConfigurationError
from mfc_dbus.engine import Engine
from mfc_dbus.errors import AlreadyExists, InvalidArgument
from mfc_dbus.model import Family, Route, VifConfig, make_route_key

V4, V6 = Family.IPV4, Family.IPV6
SG = make_route_key("192.0.2.1", "233.252.0.1")
STAR = make_route_key("", "233.252.0.0/24")
SG_ADDRESSES = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("233.252.0.1"))


class Service:
    def __init__(self, tmp_path, **kwargs) -> None:
        self.config = tmp_path / "mfc-dbus.conf"
        self.state = tmp_path / "state.json"
        self.kernel = FakeKernel({"up0": 2, "down0": 3, "down1": 4, "eth0": 5, "eth1": 6})
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(self.state, kernel=self.kernel, config_file=self.config, **kwargs)

    def start(self) -> Service:
        self.loop.run_until_complete(self.engine.start())
        return self

    def routes(self) -> dict:
        return {
            (str(s.route.key), s.route.input, s.route.outputs): s.route.origin
            for s in self.engine.list_routes()
        }

    def kernel_entry(self, key):
        source, group = (ipaddress.ip_address(packed) for packed in key.sg)
        return self.kernel.sockets[(key.family, key.table)].mfc.get((source, group))

    def saved(self) -> str:
        """The state file's snapshot and journal, as written so far."""
        files = (self.state, self.state.with_name(self.state.name + ".journal"))
        return "".join(path.read_text() for path in files if path.exists())

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.stop())
        self.loop.close()


@pytest.fixture
def service(tmp_path):
    made = Service(tmp_path)
    yield made
    made.close()


def test_files_are_applied_at_start_with_their_origin(service):
    service.config.write_text(
        "phyint down0 ttl-threshold 5\n"
        "mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0 down1\n"
    )
    (service.config.parent / "conf.d").mkdir()
    (service.config.parent / "conf.d/any.conf").write_text(
        "mroute from up0 group 233.252.0.0/24 to down1\n"
    )
    service.start()
    assert service.routes() == {
        (str(SG), "up0", ("down0", "down1")): f"{service.config}:2",
        (str(STAR), "up0", ("down1",)): f"{service.config.parent}/conf.d/any.conf:1",
    }
    assert len(service.kernel_entry(SG)[1]) == 2  # installed, out of down0 and down1
    vifs = {(v.interface, v.family): v.ttl_threshold for v in service.engine.list_vifs()}
    assert vifs[("down0", V4)] == 5 and vifs[("down0", V6)] == 5
    # Files are the administrator's: nothing of them goes to the machine-owned state file.
    assert "233.252.0.1" not in service.saved()


def test_reload_applies_only_the_difference(service):
    service.config.write_text(
        "mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0\n"
        "mroute from up0 group 233.252.0.0/24 to down1\n"
    )
    service.start()
    writes = len(service.kernel.log)
    service.config.write_text("mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0\n")
    result = service.engine.reload()
    assert (result.added, result.removed, result.changed, result.unchanged) == (0, 1, 0, 1)
    assert list(service.routes()) == [(str(SG), "up0", ("down0",))]
    unchanged_sg = [call for call in service.kernel.log[writes:] if call[2:4] == SG_ADDRESSES]
    assert unchanged_sg == []  # the unchanged route's kernel entry was never written


def test_a_bad_file_on_reload_changes_nothing(service):
    service.config.write_text("mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0\n")
    service.start()
    service.config.write_text("mroute from up0 group 10.0.0.1 to down0\nbogus\n")
    with pytest.raises(ConfigurationError) as refused:
        service.engine.reload()
    assert f"{service.config}:1:23:" in refused.value.message
    assert f"{service.config}:2:1: unknown command 'bogus'" in refused.value.message
    assert list(service.routes()) == [(str(SG), "up0", ("down0",))]


def test_a_bad_file_at_start_is_logged_and_the_service_starts(service, caplog):
    service.config.write_text("mroute from eth+ source 192.0.2.1 group 233.252.0.1 to down0\n")
    with caplog.at_level(logging.ERROR):
        service.start()
    assert "the configuration is not applied" in caplog.text
    assert (
        f"{service.config}:1:13: interface wildcard 'eth+' cannot be the input of the exact "
        "route (192.0.2.1, 233.252.0.1): the kernel forwards an (S,G) from one input"
    ) in caplog.text
    assert service.routes() == {}


def test_a_wildcard_input_is_a_route_per_interface_present(service):
    service.config.write_text(
        "mroute from eth+ group 233.252.0.0/24 to down0 eth1\n"  # eth1 is an output
        "mroute from eth+ source 10.1.0.0/16 group 233.252.1.1 to down0\n"
        "mroute from eth0 source 10.1.0.0/16 group 233.252.1.1 to down1\n"  # beats eth+
    )
    service.start()
    prefix = str(make_route_key("10.1.0.0/16", "233.252.1.1"))
    where = str(service.config)
    assert service.routes() == {
        (str(STAR), "eth0", ("down0", "eth1")): f"{where}:1",
        (prefix, "eth1", ("down0",)): f"{where}:2",
        (prefix, "eth0", ("down1",)): f"{where}:3",
    }
    service.kernel.link("new", "eth2", 7)  # present at the next reload
    service.loop.run_until_complete(asyncio.wait_for(service.kernel.all_read(), 5))
    result = service.engine.reload()
    assert (result.added, result.removed, result.changed) == (2, 0, 0)
    assert {input for (key, input, _) in service.routes() if key == str(STAR)} == {"eth0", "eth2"}
    with pytest.raises(InvalidArgument, match="from 2 inputs: 'eth0', 'eth2'"):
        service.engine.remove_route(STAR)
    with pytest.raises(InvalidArgument, match=f"configured in {where}:1; remove it there"):
        service.engine.remove_route(STAR, "eth2")
    assert service.saved().count("233.252.0.0") == 0  # the files' routes are not saved


def test_dbus_calls_cannot_change_or_remove_a_files_route(service):
    service.config.write_text(
        "phyint down0 ttl-threshold 5\n"
        "mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0\n"
    )
    service.start()
    where = f"{service.config}:2"
    with pytest.raises(AlreadyExists, match=f"configured in {where}; change it there"):
        service.engine.add_route(Route(SG, "up0", ("down1",)))
    with pytest.raises(AlreadyExists, match=where):
        service.engine.add_routes([Route(SG, "up0", ("down1",))])
    with pytest.raises(InvalidArgument, match=f"configured in {where}; remove it there"):
        service.engine.remove_route(SG)
    with pytest.raises(InvalidArgument, match=f"configured in {service.config}:1"):
        service.engine.add_vif(VifConfig("down0", V4, ttl_threshold=9))
    assert service.engine.flush() == []  # flush leaves the files' routes
    assert list(service.routes()) == [(str(SG), "up0", ("down0",))]


def test_a_file_takes_over_a_runtime_route_with_the_same_key(service):
    service.start()
    service.engine.add_route(Route(SG, "up0", ("down1",)))
    assert "233.252.0.1" in service.saved()
    service.config.write_text("mroute from up0 source 192.0.2.1 group 233.252.0.1 to down0\n")
    result = service.engine.reload()
    assert (result.added, result.removed, result.changed) == (1, 0, 0)
    assert service.routes() == {(str(SG), "up0", ("down0",)): f"{service.config}:1"}
    service.close()  # writes the snapshot: the runtime route's record is gone from it
    assert "233.252.0.1" not in service.saved()
    service.close = lambda: None  # type: ignore[method-assign]


def test_phyint_wildcards_mean_the_interfaces_present(service):
    service.config.write_text("phyint eth+ ttl-threshold 7\nphyint down1 disable\n")
    service.start()
    explicit = sorted(
        (v.interface, v.family) for v in service.engine.list_vifs() if v.ttl_threshold == 7
    )
    assert explicit == [("eth0", V4), ("eth0", V6), ("eth1", V4), ("eth1", V6)]
    assert not [v for v in service.engine.list_vifs() if v.interface == "down1"]


def test_mgroup_lines_join_follow_interfaces_and_leave_on_reload(service):
    service.config.write_text(
        "mgroup from eth0 group 233.252.0.1\n"
        "mgroup from eth1 source 192.0.2.1 group 232.1.1.1\n"
        "mgroup from gone0 group 233.252.0.2\n"
    )
    service.start()
    joined = {(m.ifindex, str(m.group), str(m.source)) for m in service.kernel.joined.joined}
    assert joined == {(5, "233.252.0.1", "None"), (6, "232.1.1.1", "192.0.2.1")}
    states = {str(s.join.key): (s.state, s.join.origin) for s in service.engine.joins.list_joins()}
    assert states["(*, 233.252.0.2) on gone0"] == ("waiting", f"{service.config}:3")

    service.kernel.link("new", "gone0", 9)  # the interface appears: its join is made
    service.loop.run_until_complete(asyncio.wait_for(service.kernel.all_read(), 5))
    assert (9, "233.252.0.2") in {(m.ifindex, str(m.group)) for m in service.kernel.joined.joined}

    service.config.write_text("mgroup from eth0 group 233.252.0.1\n")
    service.engine.reload()
    joined = {(m.ifindex, str(m.group)) for m in service.kernel.joined.joined}
    assert joined == {(5, "233.252.0.1")}
