"""Property: after every step of a random add/replace/remove/VIF sequence, what the
engine believes it installed equals the kernel's own read-back, and equals what the
configured routes call for."""

from __future__ import annotations

from engine_helpers import engine_in, route
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfc_dbus.errors import AlreadyExists, InvalidArgument, NotFound
from mfc_dbus.kernel.mfcdump import NetlinkReader
from mfc_dbus.model import Family, VifConfig, make_route_key
from mfc_lab import Lab, in_netns

INTERFACES = ["up0", "down0", "down1", "ghost0"]  # ghost0 never exists: pending routes
POOLS = {
    Family.IPV4: (["192.0.2.1", "192.0.2.2", "*", "192.0.2.0/30"], ["233.252.0.1", "232.1.1.1"]),
    Family.IPV6: (["2001:db8:1::1", "*"], ["ff3e::db8:1", "ff3e::db8:2"]),
}
FAMILY = st.sampled_from([Family.IPV4, Family.IPV4, Family.IPV6])
TABLE = st.sampled_from([0, 0, 0, 7])


@st.composite
def routes(draw):
    family = draw(FAMILY)
    sources, groups = POOLS[family]
    source, group = draw(st.sampled_from(sources)), draw(st.sampled_from(groups))
    table = draw(TABLE)
    input = draw(st.sampled_from(INTERFACES))
    others = [n for n in INTERFACES if n != input]
    outputs = draw(st.lists(st.sampled_from(others), min_size=1, max_size=3, unique=True))
    return route(source, group, input, *outputs, table=table)


operations = st.one_of(
    st.tuples(st.just("add"), routes()),
    st.tuples(st.just("replace"), routes()),
    st.tuples(st.just("batch"), st.lists(routes(), max_size=4)),
    st.tuples(st.just("remove"), routes()),
    st.tuples(
        st.just("vif"),
        st.builds(
            VifConfig,
            st.sampled_from(INTERFACES),
            FAMILY,
            TABLE,
            st.integers(1, 4),
        ),
    ),
    st.tuples(st.just("unvif"), st.sampled_from(INTERFACES), FAMILY),
)


def check(engine, lab: Lab, reader: NetlinkReader) -> None:
    ifindex = {n: lab.ifindex(lab.rtr, n) for n in INTERFACES[:3]}
    for family in Family:
        for table in (0, 7):
            installed = engine.kernel_view(family, table)
            read_back = {
                (r.source, r.group): (r.input, dict(r.outputs))
                for r in reader.dump_mfc(family, table)
            }
            assert installed == read_back, (family, table)
            # ... and it is what the configured exact routes call for.
            wanted = {}
            for status in engine.list_routes(family, table):
                r = status.route
                if r.key.is_template or r.input not in ifindex:
                    continue
                vifs = {v.interface: v for v in engine.list_vifs(family, table)}
                ttl = {n: (vifs[n].ttl_threshold if family is Family.IPV4 else 1) for n in vifs}
                wanted[r.key.sg] = (
                    ifindex[r.input],
                    {ifindex[o]: ttl[o] for o in r.outputs if o in ifindex},
                )
            assert installed == wanted, (family, table)
            names = {n for s in engine.list_routes(family, table) for n in s.route.interfaces}
            assert names <= {v.interface for v in engine.list_vifs(family, table)}


def test_random_sequences_keep_engine_and_kernel_equal(lab: Lab):
    with engine_in(lab) as engine, in_netns(lab.rtr), NetlinkReader() as reader:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(st.lists(operations, min_size=1, max_size=12))
        def run(steps):
            engine.flush()
            for vif in engine.list_vifs():
                if vif.explicit:
                    engine.remove_vif(vif.interface, vif.family, vif.table)
            assert engine.list_vifs() == []
            check(engine, lab, reader)
            for step in steps:
                kind = step[0]
                try:
                    if kind == "add":
                        engine.add_route(step[1])
                    elif kind == "replace":
                        engine.add_route(step[1], replace=True)
                    elif kind == "batch":
                        engine.add_routes(step[1])
                    elif kind == "remove":
                        engine.remove_route(step[1].key)
                    elif kind == "vif":
                        engine.add_vif(step[1])
                    else:
                        engine.remove_vif(step[1], step[2])
                except (NotFound, InvalidArgument, AlreadyExists):
                    # removing what is absent, a VIF still in use, a repeated key, an
                    # exact (S,G) from another input without replace
                    pass
                check(engine, lab, reader)

        run()


def test_the_property_check_catches_a_divergence(lab: Lab):
    """The check above can fail: a route removed behind the engine's back is seen."""
    with engine_in(lab) as engine, in_netns(lab.rtr), NetlinkReader() as reader:
        engine.add_route(route("192.0.2.1", "233.252.0.1", "up0", "down0"))
        check(engine, lab, reader)
        table = engine._tables.find(Family.IPV4, 0)
        key = make_route_key("192.0.2.1", "233.252.0.1")
        table.sock.del_mfc(*key.sg)
        try:
            check(engine, lab, reader)
        except AssertionError:
            return
        raise AssertionError("the check missed an entry deleted behind the engine's back")
