"""The state file's format, and the records it is written from.

A snapshot (JSON, one route per line so that a person can read and edit it)::

    {"schema": 1, "generator": "mfc-dbus",
     "vifs": [{"interface": "eth0", "family": "ipv4", "table": 0, "ttl_threshold": 1},
              {"interface": "eth1", ..., "mrdisc": true}],  (mrdisc: only when on)
     "routes": [
    {"source": "*", "group": "233.252.0.1", "input": "eth0", "outputs": ["eth1"]},
    {"source": "10.1.0.0/16", "group": "ff3e::1", "table": 10, "input": "eth0", ...}
     ]}

A journal line is one change: a JSON list of entries such as {"route": RECORD},
{"unroute": {"source": ..., "group": ..., "table": N, "input": ...}}, {"vif": RECORD},
{"unvif": {...}}, {"join": ...}, {"unjoin": ...}. Each entry sets or removes one thing,
so replaying a line twice changes nothing. An "unroute" entry names the input of a
(*,G) or prefix route (one may exist per input); one without it (written by 0.1)
removes every such route of its addresses. Reading: stateparse.py.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _json_string  # the C one, a str

from ..model import Family, Route, RouteKey, VifConfig

SCHEMA_VERSION = 1


def route_record(route: Route) -> str:
    """The JSON text of one persistent route, as written in the state file."""
    key = route.key
    source, group = key.texts
    table = f', "table": {key.table}' if key.table else ""
    outputs = ", ".join(map(_json_string, route.outputs))
    return (
        f'{{"source": "{source}", "group": "{group}"{table}, '
        f'"input": {_json_string(route.input)}, "outputs": [{outputs}]}}'
    )


def vif_record(config: VifConfig) -> str:
    record: dict[str, object] = {
        "interface": config.interface,
        "family": str(config.family),
        "table": config.table,
        "ttl_threshold": config.ttl_threshold,
    }
    if config.mrdisc:  # written only when on: files without it stay as they were
        record["mrdisc"] = True
    return json.dumps(record)


def render(
    route_records: list[str], vif_records: list[str], join_records: list[str] | None = None
) -> str:
    joins = ' "joins": [' + ",\n  ".join(join_records) + "],\n" if join_records else ""
    return (
        f'{{"schema": {SCHEMA_VERSION}, "generator": "mfc-dbus",\n{joins} "vifs": ['
        + ",\n  ".join(vif_records)
        + '],\n "routes": [\n'
        + ",\n".join(route_records)
        + "\n]}\n"
    )


def journal_route(record: str) -> str:
    return f'{{"route": {record}}}'


def journal_unroute(key: RouteKey) -> str:
    source, group = key.texts
    input = f', "input": {_json_string(key.input)}' if key.input else ""
    return (
        f'{{"unroute": {{"source": "{source}", "group": "{group}", "table": {key.table}'
        f"{input}}}}}"
    )


def journal_vif(record: str) -> str:
    return f'{{"vif": {record}}}'


def journal_unvif(family: Family, table: int, interface: str) -> str:
    return (
        f'{{"unvif": {{"interface": {_json_string(interface)}, "family": "{family}", '
        f'"table": {table}}}}}'
    )
