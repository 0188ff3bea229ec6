"""AddOutputs, RemoveOutputs and masked prefixes on the bus, against the fake engine:
replies, RouteAdded signals and audit lines carry the route as the service keeps it."""

from __future__ import annotations

import asyncio
import logging

from dbus_fast import Variant

from mfc_dbus.service.audit import AUDIT_LOGGER

from .harness import running_service
from .signals import Subscriber

OUTPUTS = "ssasa{sv}"


def test_output_edits_reply_signal_and_audit_the_normalised_route(bus, polkit, caplog) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    async def scenario() -> None:
        async with running_service(bus.address, trust_root=True) as (_s, _engine, client):
            sub = await Subscriber.connect(bus.address)
            try:
                await client.ok("AddRoute", "sssasa{sv}", ["", "225.1.2.3/24", "up0", [], {}])
                assert await sub.wait_for("RouteAdded", "*") == [
                    "*", "225.1.2.0/24", "up0", [], 0, "ipv4",
                ]  # fmt: skip
                added = await client.ok("AddOutputs", OUTPUTS, ["", "225.1.2.9/24", ["down0"], {}])
                assert added == [["down0"]]
                assert await sub.wait_for("RouteAdded", "*", "225.1.2.0/24", "up0", ["down0"])
                again = [["down0", "down1"], {"input": Variant("s", "up0")}]
                assert await client.ok("AddOutputs", OUTPUTS, ["*", "225.1.2.0/24", *again]) == [
                    ["down0", "down1"]
                ]
                gone = await client.ok(
                    "RemoveOutputs", OUTPUTS, ["", "225.1.2.0/24", again[0], {}]
                )
                assert gone == [[]]  # a blocking route
                assert await sub.wait_for("RouteAdded", "*", "225.1.2.0/24", "up0", [])
                other = {"input": Variant("s", "down0")}
                missing = ["", "225.1.2.0/24", ["down0"], other]
                assert (await client.error("AddOutputs", OUTPUTS, missing)).endswith("NotFound")
                listed = await client.ok("ListRoutes", "a{sv}", [{}])
                assert [(r[1], r[3]) for r in listed[0]] == [("225.1.2.0/24", [])]
            finally:
                sub.close()

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
    assert any("AddRoute: (*, 225.1.2.0/24) in up0 out nothing (blocking)" in x for x in lines)
    assert any("AddOutputs: +down0: (*, 225.1.2.0/24) in up0 out down0" in x for x in lines)
    assert any(
        "RemoveOutputs: -down0 -down1: (*, 225.1.2.0/24) in up0 out nothing (blocking)" in x
        for x in lines
    ), lines
