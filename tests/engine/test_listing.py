"""ListRoutes' read path against a fake kernel: the stable order, the resume token,
paging through a table that changes meanwhile, counters read once per table."""

from __future__ import annotations

import ipaddress
import random

import pytest
from engine_helpers import route
from fake_kernel import FakeKernel
from test_engine_unit import Harness

from mfc_dbus.engine import listing
from mfc_dbus.engine.listing import decode_token, encode_token, order_of
from mfc_dbus.errors import InvalidArgument
from mfc_dbus.kernel import SgCounters, Upcall, UpcallKind
from mfc_dbus.model import Counters, Family, make_route_key

V4 = Family.IPV4


@pytest.fixture
def h():
    harness = Harness(None, FakeKernel())
    yield harness
    harness.close()


def texts(statuses) -> list[tuple[str, str, int]]:
    return [(*s.route.key.texts, s.route.key.table) for s in statuses]


def page_through(engine, limit: int, between=lambda n: None) -> list[tuple[str, str, int]]:
    """Every row, a page of `limit` at a time; `between(n)` runs after page n."""
    seen, after, n = [], None, 0
    while True:
        page = engine.list_page(after=after, limit=limit)
        seen += texts(page.statuses)
        assert len(page.statuses) <= limit
        if page.next is None:
            return seen
        between(n)
        after, n = page.next, n + 1


def test_tokens_round_trip_for_both_families():
    for key, learned in (
        (make_route_key("10.1.0.0/16", "233.252.0.0/24", 7), False),
        (make_route_key("2001:db8::5", "ff3e::db8:1", 0), True),
        (make_route_key("*", "239.1.2.3", 4294967295), False),
        (make_route_key("*", "239.1.2.3", 0, input="a-very-long-nm0"), False),
    ):
        order = order_of(key, learned)
        assert decode_token(encode_token(order)) == order


@pytest.mark.parametrize(
    "token", ["zz", "04", encode_token(order_of(make_route_key("", "239.1.2.3")))[:-2],
              encode_token(order_of(make_route_key("", "239.1.2.3")))[:-2] + "02"],
)  # fmt: skip
def test_a_token_listroutes_did_not_make_is_invalid_argument_saying_what_to_pass(h, token):
    with pytest.raises(InvalidArgument, match="not a resume token: pass the 'next' value"):
        h.engine.list_page(after=token, limit=10)


def test_limit_zero_is_invalid_argument(h):
    with pytest.raises(InvalidArgument, match="limit=0: give at least 1"):
        h.engine.list_page(limit=0)


def test_order_is_family_table_group_source_by_value_not_by_arrival(h):
    added = [
        route("10.0.0.10", "233.252.0.2", "up0", "down0"),
        route("2001:db8::1", "ff3e::db8:1", "up0", "down0"),
        route("10.0.0.9", "233.252.0.2", "up0", "down0"),
        route("*", "233.252.0.2", "up0", "down0", table=3),
        route("10.0.0.200", "233.252.0.1", "up0", "down0"),
        route("*", "233.252.0.2", "up0", "down0"),
    ]
    for found in added:
        h.engine.add_route(found)
    assert texts(h.engine.list_routes()) == [
        ("10.0.0.200", "233.252.0.1", 0),
        ("*", "233.252.0.2", 0),
        ("10.0.0.9", "233.252.0.2", 0),
        ("10.0.0.10", "233.252.0.2", 0),
        ("*", "233.252.0.2", 3),
        ("2001:db8::1", "ff3e::db8:1", 0),
    ]


def test_pages_cover_the_table_once_and_the_last_page_has_no_token(h):
    routes = [route(f"10.0.{n // 250}.{n % 250 + 1}", "233.252.0.1", "up0", "down0")
              for n in range(1000)]  # fmt: skip
    h.engine.add_routes(routes)
    whole = texts(h.engine.list_routes())
    assert len(whole) == 1000
    assert page_through(h.engine, 300) == whole
    assert page_through(h.engine, 1000) == whole  # one full page: no next
    assert h.engine.list_page(limit=1000).next is None
    assert h.engine.list_page(limit=999).next is not None


def test_paging_while_the_table_changes_never_repeats_or_skips_a_route_that_stayed(h):
    rng = random.Random(15)
    sources = [f"10.{n // 250}.{n % 250}.1" for n in range(2000)]
    stay = [route(s, "233.252.0.1", "up0", "down0") for s in sources[::2]]
    churn = [route(s, "233.252.0.1", "up0", "down0") for s in sources[1::2]]
    h.engine.add_routes(stay + churn[:500])
    present = {r.key for r in churn[:500]}

    def change(_n):  # between pages: remove some, add others, replace a staying one
        for gone in rng.sample(sorted(present, key=str), 50):
            h.engine.remove_route(gone)
            present.discard(gone)
        for new in rng.sample([r for r in churn if r.key not in present], 50):
            h.engine.add_route(new)
            present.add(new.key)
        kept = rng.choice(stay)
        h.engine.add_route(route(kept.key.texts[0], "233.252.0.1", "up0", "down1"))

    seen = page_through(h.engine, 97, change)
    assert len(seen) == len(set(seen))  # nothing twice
    stayed = {(r.key.texts[0], "233.252.0.1", 0) for r in stay}
    assert stayed <= set(seen)  # nothing that stayed is missing


def test_counters_are_read_once_per_table_and_summed_for_templates(h):
    h.engine.add_routes([route("10.0.0.1", "233.252.0.1", "up0", "down0"),
                         route("10.0.0.2", "233.252.0.1", "up0", "down0"),
                         route("*", "233.252.0.2", "up0", "down0")])  # fmt: skip
    up0 = h.engine.list_vifs()[0].index
    group = ipaddress.ip_address("233.252.0.2")
    for n in (10, 11):
        source = ipaddress.ip_address(f"192.0.2.{n}")
        h.sock().queue_upcall(Upcall(UpcallKind.NOCACHE, V4, 0, source.packed, group.packed, up0))
        h.sock().counters[(source, group)] = SgCounters(n, 100 * n, 1)
    h.deliver()
    one = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("233.252.0.1")
    h.sock().counters[one] = SgCounters(5, 500, 2)
    h.kernel.log.clear()
    statuses = {(s.route.key.texts[0], s.route.key.texts[1]): s for s in h.engine.list_routes()}
    assert [entry for entry in h.kernel.log if entry[0] == "sg_counters_many"] == [
        ("sg_counters_many", 0, 4)  # 2 exact and 2 learned, each once (the template sums 2)
    ]
    assert statuses[("10.0.0.1", "233.252.0.1")].counters == Counters(5, 500, 2)
    assert statuses[("10.0.0.2", "233.252.0.1")].counters == Counters(0, 0, 0)
    assert statuses[("*", "233.252.0.2")].counters == Counters(21, 2100, 2)
    assert statuses[("192.0.2.10", "233.252.0.2")].state == "learned"
    assert statuses[("192.0.2.11", "233.252.0.2")].counters == Counters(11, 1100, 1)


def test_templates_of_one_group_from_two_inputs_are_two_rows_paged_apart(h):
    h.engine.add_route(route("*", "233.252.0.2", "up0", "down0"))
    h.engine.add_route(route("*", "233.252.0.2", "down1", "down0"))
    h.engine.add_route(route("10.0.0.1", "233.252.0.2", "up0", "down0"))
    whole = [(s.route.key.texts[0], s.route.input) for s in h.engine.list_routes()]
    assert whole == [("*", "down1"), ("*", "up0"), ("10.0.0.1", "up0")]
    first = h.engine.list_page(limit=1)
    second = h.engine.list_page(after=first.next, limit=1)
    assert [s.route.input for s in first.statuses + second.statuses] == ["down1", "up0"]


def test_the_rows_orders_are_order_of_their_keys(h):
    """_rows writes order_of inline (every page visits every route): the two agree."""
    h.engine.add_routes([route("10.0.0.1", "233.252.0.1", "up0", "down0"),
                         route("*", "233.252.0.2", "up0", "down0"),
                         route("10.1.0.0/16", "239.0.0.0/8", "up0", "down0", table=7),
                         route("2001:db8::5", "ff3e::db8:1", "up0", "down0"),
                         route("*", "ff3e::db8:2", "up0", "down0")])  # fmt: skip
    up0 = h.engine.list_vifs()[0].index
    group = ipaddress.ip_address("233.252.0.2")
    source = ipaddress.ip_address("192.0.2.10")
    h.sock().queue_upcall(Upcall(UpcallKind.NOCACHE, V4, 0, source.packed, group.packed, up0))
    h.deliver()
    rows = listing._rows(h.engine._routes, h.engine._tables, None, None, None)
    learned = [row for row in rows if len(row) == 4]
    assert len(rows) == 6 and len(learned) == 1
    for row in rows:
        if len(row) == 2:
            assert row[0] == order_of(row[1].key)
        else:
            found, sg = row[1], row[2]
            status = listing.learned_status(found, sg, row[3])
            assert row[0] == order_of(status.route.key, learned=True)
    middle = sorted(row[0] for row in rows)[2]
    assert sorted(row[0] for row in listing._rows(
        h.engine._routes, h.engine._tables, None, None, middle)) == sorted(
        row[0] for row in rows if row[0] > middle)  # fmt: skip
