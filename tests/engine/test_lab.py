"""The engine against the real kernel in the namespace lab: real packets, read-back
through rtnetlink and `ip mroute show` as independent witnesses."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from engine_helpers import engine_in, kernel_view, route, spin_until

from mfc_dbus.engine.state import StateFile
from mfc_dbus.errors import KernelBusy
from mfc_dbus.kernel import open_mroute_socket
from mfc_dbus.model import Family
from mfc_lab import Lab, Sender, in_netns, netns_run

FAMILIES = [Family.IPV4, Family.IPV6]


def extra_source(lab: Lab, family: Family, n: int) -> str:
    """Add the n-th extra source address to src:eth0 and return it."""
    if family is Family.IPV4:
        address, prefix = f"192.0.2.{10 + n}", 24
        netns_run(lab.src, "ip", "addr", "add", f"{address}/{prefix}", "dev", "eth0")
    else:
        address, prefix = f"2001:db8:1::{0x10 + n:x}", 64
        netns_run(lab.src, "ip", "addr", "add", f"{address}/{prefix}", "dev", "eth0", "nodad")
    return address


def learned(engine, family: Family) -> list:
    return [s for s in engine.list_routes(family) if s.state == "learned"]


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_star_g_delivers_first_packet_of_20_new_sources_then_expires(lab: Lab, family):
    group = lab.group(family)
    sources = [extra_source(lab, family, n) for n in range(20)]
    with engine_in(lab, learned_expiry=1.0) as engine:
        engine.add_route(route("*", group, "up0", "down0"))
        with lab.receiver(0, family) as rx:
            for n, source in enumerate(sources):
                with Sender.open(lab.src, "eth0", family, 8, source) as tx:
                    tx.send(group, 1, payload=f"first {n}".encode())
                    spin_until(engine, lambda n=n: rx.count >= n + 1, timeout=2.0)
            # Every source's very first (and only) packet arrived.
            assert sorted(src for _, src, _ in rx.received) == sorted(sources)
        flows = learned(engine, family)
        assert {s.route.key.texts[0] for s in flows} == set(sources)
        assert all(s.route.input == "up0" and s.route.outputs == ("down0",) for s in flows)
        assert all(s.counters.packets == 1 for s in flows)
        assert engine.kernel_view(family) == kernel_view(lab, family)
        assert len(kernel_view(lab, family)) == 20
        # No more traffic: expired after the interval, from the engine and the kernel.
        start = time.monotonic()
        assert spin_until(engine, lambda: not learned(engine, family), timeout=5.0)
        assert time.monotonic() - start >= 0.5
        assert kernel_view(lab, family) == {}
        assert [s.state for s in engine.list_routes(family)] == ["installed"]


def test_prefix_source_route_forwards_only_sources_inside(lab: Lab):
    group = lab.group()
    inside = extra_source(lab, Family.IPV4, 2)  # 192.0.2.12, inside 192.0.2.0/28
    outside = extra_source(lab, Family.IPV4, 40)  # 192.0.2.50, outside
    with engine_in(lab) as engine:
        engine.add_route(route("192.0.2.0/28", group, "up0", "down0"))
        with lab.receiver(0) as rx:
            for source in (outside, inside, outside):
                with Sender.open(lab.src, "eth0", "ipv4", 8, source) as tx:
                    tx.send(group, 3)
                    # Its upcall was handled: the flow has an entry, with or without outputs.
                    flow = (_v4(source), _v4(group))
                    assert spin_until(engine, lambda f=flow: f in engine.kernel_view(Family.IPV4))
            # The inside flow's three packets arrive; outside's went nowhere by then.
            assert spin_until(engine, lambda: rx.count >= 3)
            got = [src for _, src, _ in rx.received]
        assert got.count(inside) == 3 and outside not in got
        view = kernel_view(lab, Family.IPV4)
        # The outside flow got an entry with no outputs (so the kernel stops asking).
        up0 = lab.ifindex(lab.rtr, "up0")
        assert view[(_v4(outside), _v4(group))] == (up0, {})
        assert view[(_v4(inside), _v4(group))][1] == {lab.ifindex(lab.rtr, "down0"): 1}
        assert engine.kernel_view(Family.IPV4) == view
        assert [s.route.key.texts[0] for s in learned(engine, Family.IPV4)] == [inside]


def _v4(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _forwards(engine, lab: Lab, group: str, count: int = 3) -> int:
    with lab.receiver(0) as rx, lab.sender() as tx:
        tx.send(group, count)
        spin_until(engine, lambda: rx.count >= count, timeout=1.0)
        return rx.count


@pytest.mark.parametrize("leg", ["output", "input"])
def test_interface_deleted_and_recreated_resumes_forwarding_with_no_call(lab: Lab, leg):
    group = lab.group()
    with engine_in(lab) as engine:
        engine.add_route(route(lab.source_address(), group, "up0", "down0", "down1"))
        assert _forwards(engine, lab, group) == 3
        name = "down0" if leg == "output" else "up0"
        old_index = lab.ifindex(lab.rtr, name)
        lab.delete_link(lab.rtr, name)
        assert spin_until(engine, lambda: engine.list_routes()[0].state == "pending")
        status = engine.list_routes()[0]
        assert status.missing_interfaces == (name,)
        assert engine.kernel_view(Family.IPV4) == kernel_view(lab, Family.IPV4)
        if leg == "input":
            assert kernel_view(lab, Family.IPV4) == {}
            lab.add_upstream()
        else:
            lab.add_downstream(0)
        assert lab.ifindex(lab.rtr, name) != old_index
        assert spin_until(engine, lambda: engine.list_routes()[0].state == "installed")
        assert engine.kernel_view(Family.IPV4) == kernel_view(lab, Family.IPV4)
        assert _forwards(engine, lab, group) == 3


def test_route_pending_until_its_interface_appears(lab: Lab):
    with engine_in(lab) as engine:
        status = engine.add_route(route(lab.source_address(), lab.group(), "up0", "extra0"))
        assert status.state == "pending" and status.missing_interfaces == ("extra0",)
        assert kernel_view(lab, Family.IPV4) == engine.kernel_view(Family.IPV4)
        netns_run(lab.rtr, "ip", "link", "add", "extra0", "type", "veth", "peer", "extra0p")
        assert spin_until(engine, lambda: engine.list_routes()[0].state == "installed")
        view = kernel_view(lab, Family.IPV4)
        assert list(view.values()) == [
            (lab.ifindex(lab.rtr, "up0"), {lab.ifindex(lab.rtr, "extra0"): 1})
        ]


def test_route_in_table_10_with_mrule_forwards_and_table_0_untouched(lab: Lab):
    group = lab.group()
    netns_run(lab.rtr, "ip", "mrule", "add", "iif", "up0", "lookup", "10")
    with engine_in(lab) as engine:
        engine.add_route(route(lab.source_address(), group, "up0", "down0", table=10))
        assert _forwards(engine, lab, group) == 3
        assert kernel_view(lab, Family.IPV4, 0) == {}
        assert kernel_view(lab, Family.IPV4, 10) == engine.kernel_view(Family.IPV4, 10)
        assert "Iif: up0" in lab.mroute_show(table="10")
        assert lab.mroute_show().strip() == ""
        assert [v.table for v in engine.list_vifs()] == [10, 10]


def thousand_routes(lab: Lab) -> list:
    return [
        route(f"10.{n // 250}.{n % 250}.1", f"232.1.{n % 7}.{n % 200 + 1}", "up0",
              *(("down0",) if n % 2 else ("down0", "down1")))
        for n in range(1000)
    ]  # fmt: skip


def test_restart_with_1000_routes_state_file_restores_the_kernel_table(lab: Lab, tmp_path):
    state = tmp_path / "state.json"
    routes = thousand_routes(lab)
    with engine_in(lab, state) as engine:
        assert engine.add_routes(routes) == 1000
    assert kernel_view(lab, Family.IPV4) == {}  # stopping closed the socket: kernel flushed
    saved = json.loads(state.read_text())
    assert saved["schema"] == 1 and len(saved["routes"]) == 1000
    with engine_in(lab, state) as engine:
        assert engine.state_error is None
        view = kernel_view(lab, Family.IPV4)
        index = {n: lab.ifindex(lab.rtr, n) for n in ("up0", "down0", "down1")}
        expected = {
            (_v4(r["source"]), _v4(r["group"])): (
                index[r["input"]],
                {index[o]: 1 for o in r["outputs"]},
            )
            for r in saved["routes"]
        }
        assert view == expected
        assert engine.kernel_view(Family.IPV4) == view
        assert engine.route_count == 1000


def test_truncated_state_file_is_kept_aside_and_engine_starts_empty(lab: Lab, tmp_path, caplog):
    state = tmp_path / "state.json"
    with engine_in(lab, state) as engine:
        engine.add_routes(thousand_routes(lab)[:50])
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    with engine_in(lab, state) as engine:
        assert engine.route_count == 0
        assert "state.json is not valid" in engine.state_error
        assert engine.state_file_aside.read_text() == text[: len(text) // 2]
        assert engine.state_file_aside.name.startswith("state.json.corrupt-")
        assert any("moved to" in r.getMessage() for r in caplog.records)
        # New changes are written to a fresh file; the bad copy stays untouched.
        engine.add_route(route(lab.source_address(), lab.group(), "up0", "down0"))
        assert len(StateFile(state).load().routes) == 1  # snapshot + journal
        assert engine.state_file_aside.read_text() == text[: len(text) // 2]


def test_kernel_busy_for_one_family_keeps_the_rest_working(lab: Lab):
    with in_netns(lab.rtr):
        other_router = open_mroute_socket(Family.IPV4)  # like smcrouted holding IPv4
    try:
        with engine_in(lab) as engine:
            assert engine.families == (Family.IPV6,)
            with pytest.raises(KernelBusy, match="owned by another process"):
                engine.add_route(route(lab.source_address(), lab.group(), "up0", "down0"))
            assert engine.list_routes() == [] and engine.route_count == 0
            status = engine.add_route(
                route(lab.source_address("ipv6"), lab.group("ipv6"), "up0", "down0")
            )
            assert status.state == "installed"
            assert engine.kernel_view(Family.IPV6) == kernel_view(lab, Family.IPV6)
    finally:
        other_router.close()


def test_wrongvif_moves_a_learned_flow_to_an_input_a_template_allows(lab: Lab):
    group = lab.group()
    source = "192.0.2.77"
    netns_run(lab.src, "ip", "addr", "add", f"{source}/24", "dev", "eth0")
    with engine_in(lab) as engine:
        # The flow is learned from the prefix template (input up0); down1 is an output
        # so the kernel reports the flow arriving there (WRONGVIF).
        engine.add_route(route("192.0.2.0/24", group, "up0", "down0", "down1"))
        engine.add_route(route("*", group, "down1", "down0"))
        with lab.receiver(0) as rx:
            with Sender.open(lab.src, "eth0", "ipv4", 8, source) as tx:
                tx.send(group, 1)
                assert spin_until(engine, lambda: rx.count == 1)
            assert learned(engine, Family.IPV4)[0].route.input == "up0"
            # The source moves behind down1.
            netns_run(lab.dst(1), "ip", "addr", "add", f"{source}/24", "dev", "eth0")
            with Sender.open(lab.dst(1), "eth0", "ipv4", 8, source) as tx:
                tx.send(group, 1)
                assert spin_until(
                    engine, lambda: learned(engine, Family.IPV4)[0].route.input == "down1"
                )
                flow = learned(engine, Family.IPV4)[0]
                assert flow.route.outputs == ("down0",)
                tx.send(group, 2)
                assert spin_until(engine, lambda: rx.count >= 3)
        assert engine.kernel_view(Family.IPV4) == kernel_view(lab, Family.IPV4)


@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_a_source_moving_to_another_templates_input_is_followed(lab: Lab, family: Family):
    """The new input is no output of the flow, so only PIM mode (set while the table
    has templates) makes the kernel report the flow arriving there."""
    v4 = family is Family.IPV4
    group = lab.group(family)
    source, prefix = (
        ("192.0.2.77", "192.0.2.0/24") if v4 else ("2001:db8:1::77", "2001:db8:1::/64")
    )
    length = 24 if v4 else 64
    netns_run(lab.src, "ip", "addr", "add", f"{source}/{length}", "dev", "eth0",
              *([] if v4 else ["nodad"]))  # fmt: skip
    with engine_in(lab) as engine:
        engine.add_route(route(prefix, group, "up0", "down0"))
        engine.add_route(route("*", group, "down1", "down0"))
        with lab.receiver(0, family) as rx:
            with Sender.open(lab.src, "eth0", family, 8, source) as tx:
                tx.send(group, 1)
                assert spin_until(engine, lambda: rx.count == 1)
            assert learned(engine, family)[0].route.input == "up0"
            # The source moves behind down1, which is not among the flow's outputs.
            netns_run(lab.dst(1), "ip", "addr", "add", f"{source}/{length}", "dev", "eth0",
                      *([] if v4 else ["nodad"]))  # fmt: skip
            with Sender.open(lab.dst(1), "eth0", family, 8, source) as tx:
                tx.send(group, 1)
                assert spin_until(
                    engine, lambda: learned(engine, family)[0].route.input == "down1"
                )
                tx.send(group, 2)
                assert spin_until(engine, lambda: rx.count >= 3)
        assert engine.kernel_view(family) == kernel_view(lab, family)
