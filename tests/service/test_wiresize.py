"""The size bounds that keep a ListRoutes reply or an AddRoutes call inside a bus
message: never below what dbus-fast really marshals, and a named error past the limit."""

from __future__ import annotations

import pytest
from dbus_fast import Variant
from dbus_fast._private.marshaller import Marshaller  # the measuring stick, test only

from mfc_dbus.client import check_batch_size
from mfc_dbus.contract import load
from mfc_dbus.errors import LimitExceeded
from mfc_dbus.model import Counters, Route, RouteStatus, make_route_key
from mfc_dbus.service.convert import Wire
from mfc_dbus.wiresize import rows_size

CONTRACT = load()
NAMES = ["down0", "a-very-long-nm0", "x"]


def marshalled(signature: str, body: list) -> int:
    """The body's size as dbus-fast marshals it (the header is HEADER_ALLOWANCE's)."""
    return len(Marshaller(signature, body).marshall())


def statuses() -> list[RouteStatus]:
    found = []
    for n, (source, group) in enumerate([
        ("192.0.2.1", "233.252.0.1"), ("*", "239.0.0.0/8"),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:0/112", "ff3e:ffff:ffff:ffff:ffff:ffff:ffff:0/112"),
    ]):  # fmt: skip
        route = Route(make_route_key(source, group, 7 * n), "up0", tuple(NAMES[: n + 1]),
                      owner=":1.4242" if n == 1 else None,
                      origin="/etc/mfc-dbus/conf.d/é.conf:12" if n == 2 else None)  # fmt: skip
        found.append(RouteStatus(route, "pending", Counters(2**63, 5, n), tuple(NAMES[:n])))
    return found


def test_a_listroutes_reply_is_never_larger_than_its_bound():
    wire = Wire(CONTRACT)
    rows_in = statuses() * 50
    for count in (1, 2, 3, 150):
        chosen = rows_in[:count]
        rows = wire.route_page(chosen, "ab" * 40, 1 << 25)
        bound = wire._route_sizer.fixed * count + 80 + sum(map(wire._strings_size, chosen))
        assert marshalled("a(sssasa{sv})", [rows]) <= bound


def test_the_exact_size_is_what_dbus_fast_marshals():
    wire = Wire(CONTRACT)
    for count in (1, 2, 3, 7, 150):
        rows = wire.route_page(
            (statuses() * 50)[:count], "ab" * 40 if count % 2 else None, 1 << 25
        )
        assert rows_size(rows) == marshalled("a(sssasa{sv})", [rows])
    batch = [[f"10.0.0.{n}", "233.252.0.1", "up0", NAMES[: n % 3 + 1],
              {"table": Variant("u", 5), "lease": Variant("b", True)} if n % 2 else {}]
             for n in range(1, 200)]  # fmt: skip
    assert rows_size(batch) == marshalled("a(sssasa{sv})", [batch])


def test_a_reply_over_the_bound_but_within_the_limit_is_sent():
    wire = Wire(CONTRACT)
    rows = statuses() * 1000
    exact = rows_size(wire.route_page(rows, None, 1 << 30))
    bound = wire._route_sizer.fixed * len(rows) + sum(map(wire._strings_size, rows))
    assert bound > exact + 4096 * 2
    assert len(wire.route_page(rows, None, exact + 4096)) == len(rows)
    with pytest.raises(LimitExceeded):
        wire.route_page(rows, None, exact + 4095)


def test_a_listroutes_reply_past_the_limit_is_limit_exceeded_saying_how_to_page():
    wire = Wire(CONTRACT)
    rows = statuses() * 1000
    assert len(wire.route_page(rows, None, 8 << 20)) == 3000
    with pytest.raises(LimitExceeded) as refused:
        wire.route_page(rows, None, 1 << 20)
    message = refused.value.message
    assert "a reply of 3000 routes would take" in message and "more than the 1.0 MiB" in message
    assert "limit (such as limit=10000) and after" in message


def test_an_add_routes_batch_past_the_limit_is_refused_naming_a_batch_size_that_fits():
    rows = [[f"10.0.{n // 256}.{n % 256}", "233.252.0.1", "up0", NAMES[: n % 3 + 1],
             {"table": Variant("u", 5)} if n % 2 else {}] for n in range(3000)]  # fmt: skip
    size = marshalled("a(sssasa{sv})", [rows])
    with pytest.raises(LimitExceeded):  # measured exactly past the bound
        check_batch_size(rows, size + 4095)
    check_batch_size(rows, size + 4096)  # this is sent
    limit = size // 2 + 65536
    with pytest.raises(LimitExceeded) as refused:
        check_batch_size(rows, limit)
    message = refused.value.message
    most = int(message.split("at most ")[1].split()[0])
    assert 0 < most <= 1500 and "all or nothing" in message
    check_batch_size(rows[:most], limit)  # the size it names fits
