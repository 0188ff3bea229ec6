"""Persistent group joins in the state file: their JSON records and journal entries.

    "joins": [{"interface": "eth0", "source": "*", "group": "233.252.0.1"},
              {"interface": "eth1", "source": "192.0.2.1", "group": "232.1.1.1", "table": 3}]

A state file written before joins existed has no "joins" list: it loads as none.
"""

from __future__ import annotations

import json

from .joins import Join, JoinKey, make_join_key


def join_entry(key: JoinKey) -> dict[str, object]:
    entry: dict[str, object] = {
        "interface": key.interface,
        "source": key.texts[0],
        "group": key.texts[1],
    }
    if key.table:
        entry["table"] = key.table
    return entry


def join_record(join: Join) -> str:
    return json.dumps(join_entry(join.key))


def journal_join(record: str) -> str:
    return f'{{"join": {record}}}'


def journal_unjoin(key: JoinKey) -> str:
    return json.dumps({"unjoin": join_entry(key)})


def parse_join_key(entry: object, where: str) -> JoinKey:
    """Raises ValueError (the shape) or InvalidArgument (the values)."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a JSON object")
    fields: dict[str, object] = {"source": "*", "table": 0, **entry}
    for name, kind in (("interface", str), ("source", str), ("group", str), ("table", int)):
        value = fields.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{where}: field {name!r} must be a {kind.__name__}, not {value!r}")
    return make_join_key(
        str(fields["interface"]), str(fields["source"]), str(fields["group"]),
        int(fields["table"]),  # type: ignore[call-overload]
    )  # fmt: skip


def parse_join(entry: object, where: str) -> Join:
    return Join(parse_join_key(entry, where))


def parse_joins(entries: object) -> dict[JoinKey, Join]:
    """The snapshot's "joins" list (absent in files written before joins existed)."""
    if not isinstance(entries, list):
        raise ValueError(f"state: field 'joins' must be a list, not {entries!r}")
    joins: dict[JoinKey, Join] = {}
    for n, entry in enumerate(entries):
        join = parse_join(entry, f"join #{n + 1}")
        joins[join.key] = join
    return joins


def replay_join_entry(op: str, value: object, where: str, joins: dict[JoinKey, Join]) -> None:
    if op == "join":
        join = parse_join(value, where)
        joins[join.key] = join
    else:
        joins.pop(parse_join_key(value, where), None)
