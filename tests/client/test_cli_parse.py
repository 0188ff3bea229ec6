"""Command-line parsing: prefixes, keywords, the legacy form, batch files, early validation."""

from __future__ import annotations

import os

import pytest

from mfc_dbus import cli, cli_agent
from mfc_dbus.cli_commands import HANDLERS, LOCAL_HANDLERS
from mfc_dbus.cli_grammar import GRAMMARS, Command, UsageError, parse_command, parse_options
from mfc_dbus.cli_prepare import parse_batch, prepare, read_batch, route_spec
from mfc_dbus.client import RouteSpec
from mfc_dbus.errors import InvalidArgument


def command(*words: str) -> Command:
    return parse_command(list(words))


def prepared(*words: str) -> dict:
    opts = parse_options(list(words))
    return prepare(parse_command(opts.words), opts)


@pytest.mark.parametrize(
    "words, obj, verb",
    [
        (("r", "s"), "route", "show"),
        (("ro", "a", "232.1.1.1", "iif", "a", "oif", "b"), "route", "add"),
        (("route", "d", "232.1.1.1"), "route", "del"),
        (("route", "delete", "232.1.1.1"), "route", "del"),
        (("route", "l"), "route", "show"),
        (("route", "ls"), "route", "show"),
        (("route", "f"), "route", "flush"),
        (("route",), "route", "show"),
        (("v", "s"), "vif", "show"),
        (("vif", "a", "eth0"), "vif", "add"),
        (("s",), "route", "show"),
        (("sh",), "route", "show"),
        (("st",), "status", ""),
        (("m", "s"), "route", "show"),  # `mfc show`
        (("mo",), "monitor", ""),
        (("re",), "reload", ""),
        (("b", "-"), "batch", ""),
        (("d", "232.1.1.1"), "diagnose", ""),
    ],
)
def test_prefixes_resolve_in_ip_order(words, obj, verb):
    parsed = command(*words)
    assert (parsed.obj, parsed.verb) == (obj, verb)


def test_unknown_words_are_usage_errors_naming_the_choices():
    with pytest.raises(UsageError, match="unknown object 'x'; use one of: route, vif"):
        command("x")
    with pytest.raises(UsageError, match="unknown route command 'zap'; use one of: add"):
        command("route", "zap")
    with pytest.raises(UsageError, match="no command given"):
        command()


def test_route_add_keywords():
    values = command(
        "route", "add", "232.1.1.1", "from", "192.0.2.1", "iif", "up0",
        "oif", "down0", "down1", "table", "7", "lease",
    ).values  # fmt: skip
    assert values == {
        "group": "232.1.1.1",
        "source": "192.0.2.1",
        "input": "up0",
        "outputs": ["down0", "down1"],
        "table": "7",
        "lease": True,
    }


def test_route_add_second_positional_is_the_source():
    values = command("route", "add", "232.1.1.1", "192.0.2.1", "iif", "a", "oifs", "b").values
    assert values["source"] == "192.0.2.1"


@pytest.mark.parametrize(
    "words, message",
    [
        (("route", "add-output", "232.1.1.1", "iif", "a"), "missing outputs"),
        (("route", "del-o", "232.1.1.1", "oif"), "'oif' needs at least one"),
        (("route", "add", "232.1.1.1", "oif", "b"), "missing input"),
        (("route", "add", "232.1.1.1", "iif"), "'iif' needs a value"),
        (("route", "add", "232.1.1.1", "iif", "a", "oif"), "'oif' needs at least one"),
        (("route", "add", "232.1.1.1", "iif", "a", "iif", "b", "oif", "c"), "'iif' given twice"),
        (("route", "del", "232.1.1.1", "1.2.3.4", "extra"), "unexpected argument 'extra'"),
        (("mfc", "add", "--group", "232.1.1.1"), "required: --iif, --oifs"),
    ],
)
def test_usage_errors(words, message):
    with pytest.raises(UsageError, match=message):
        command(*words)


def test_legacy_mfc_form_matches_the_keyword_form():
    legacy = command(
        "mfc", "add", "--source", "192.0.2.1", "--group", "232.1.1.1",
        "--iif", "up0", "--oifs", "down0", "down1",
    )  # fmt: skip
    keyword = command(
        "route", "add", "232.1.1.1", "from", "192.0.2.1", "iif", "up0", "oif", "down0", "down1"
    )
    assert (legacy.obj, legacy.verb) == ("route", "add")
    assert route_spec(legacy.values) == route_spec(keyword.values)
    deleted = command("mfc", "del", "--group", "232.1.1.1")
    assert (deleted.obj, deleted.verb, deleted.values) == (
        "route",
        "del",
        {"source": "", "group": "232.1.1.1"},
    )


def test_single_outputs_blocking_routes_and_masked_prefixes(capsys):
    ready = prepared("route", "add-output", "225.1.2.3/24", "oif", "b", "c", "iif", "a")
    assert (ready["group"], ready["source"], ready["outputs"], ready["input"]) == (
        "225.1.2.0/24", None, ["b", "c"], "a",
    )  # fmt: skip
    assert "mfc-dbus: warning: 225.1.2.3/24 taken as 225.1.2.0/24" in capsys.readouterr().err
    ready = prepared("r", "del-o", "ff3e::1", "from", "2001:db8::1/32", "oif", "b", "table", "3")
    assert (ready["group"], ready["source"], ready["input"], ready["table"]) == (
        "ff3e::1", "2001:db8::/32", None, 3,
    )  # fmt: skip
    assert "2001:db8::1/32 taken as 2001:db8::/32" in capsys.readouterr().err
    assert prepared("route", "show", "225.1.2.0/24")["group"] == "225.1.2.0/24"
    assert capsys.readouterr().err == ""  # a network prefix: nothing to say
    blocking = prepared("route", "add", "232.1.1.1", "iif", "a")["spec"]
    assert blocking == RouteSpec("", "232.1.1.1", "a", ())
    hairpin = prepared("route", "add", "232.1.1.1", "from", "10.1.1.1", "iif", "a", "oif", "a")
    assert hairpin["spec"].outputs == ("a",)
    with pytest.raises(InvalidArgument, match="interface name 'a/b'"):
        prepared("route", "add-output", "232.1.1.1", "oif", "a/b")


def test_route_spec_normalises_and_maps_flags():
    spec = route_spec(
        {"group": "ff3e::1", "source": "*", "input": "a", "outputs": ["b"], "temporary": True}
    )
    assert spec == RouteSpec("", "ff3e::1", "a", ("b",), persistent=False, lease=None)


@pytest.mark.parametrize(
    "words, message",
    [
        (("route", "add", "192.0.2.9", "iif", "a", "oif", "b"), "not a multicast address"),
        (("route", "add", "224.0.0.5", "iif", "a", "oif", "b"), "link-local"),
        (("route", "add", "232.1.1.1", "from", "2001:db8::1", "iif", "a", "oif", "b"), "famil"),
        (("route", "add", "232.1.1.1", "iif", "a:b", "oif", "b"), "interface name 'a:b'"),
        (("route", "del", "232.1.1.1", "table", "x"), "table 'x' is not valid"),
        (("vif", "add", "eth0", "threshold", "256"), "threshold '256' is not valid"),
        (("vif", "add", "eth0", "family", "ipx"), "family 'ipx' is not valid"),
        (("diagnose", "232.1.1.1", "interval", "-1"), "interval '-1' is not valid"),
        (("route", "show", "10.0.0.1"), "not a multicast address"),
    ],
)
def test_bad_values_fail_before_any_bus_traffic(words, message):
    with pytest.raises(InvalidArgument, match=message):
        prepared(*words)


def test_global_flags_anywhere_and_family_options():
    opts = parse_options(["route", "show", "-j", "-6", "--no-ask-password"])
    assert opts.json and opts.ipv6 and opts.no_ask_password and not opts.ipv4
    assert opts.words == ["route", "show"]
    ready = prepare(parse_command(opts.words), opts)
    assert ready["family"] == "ipv6"
    ready = prepared("-4", "route", "flush", "family", "ipv6")  # the keyword wins
    assert ready["family"] == "ipv6"
    assert prepared("route", "flush")["family"] is None


def test_show_filters_are_normalised_and_source_only_when_given():
    ready = prepared("route", "show", "233.252.0.1/32")
    assert (ready["group"], ready["source"], ready["source_given"]) == ("233.252.0.1", None, False)
    ready = prepared("route", "show", "ff3e:0::1", "from", "2001:db8:0::1")
    assert (ready["group"], ready["source"], ready["source_given"]) == (
        "ff3e::1",
        "2001:db8::1",
        True,
    )
    assert prepared("route", "show", "from", "*")["source"] is None


def test_diagnose_prepares_group_family_and_any_source():
    ready = prepared("diagnose", "ff3e::db8:1", "*", "interval", "0")
    assert ready["group_family"] == "ipv6"
    assert ready["source"] is None
    assert ready["interval"] == 0


def test_batch_lines(tmp_path):
    text = """
        # comment
        route add 232.1.1.1 from 192.0.2.1 iif up0 oif down0
        add 232.1.1.2 iif up0 oif down0 down1 temporary   # trailing comment
        mfc add --group ff3e::1 --iif up0 --oifs down1
        r a 232.1.1.3 iif up0 oif down0 table 5
    """
    specs = parse_batch(text.splitlines(), "routes.txt")
    assert [(s.source, s.group, s.outputs) for s in specs] == [
        ("192.0.2.1", "232.1.1.1", ("down0",)),
        ("", "232.1.1.2", ("down0", "down1")),
        ("", "ff3e::1", ("down1",)),
        ("", "232.1.1.3", ("down0",)),
    ]
    assert specs[1].persistent is False and specs[3].table == 5


@pytest.mark.parametrize(
    "line, error, message",
    [
        ("route del 232.1.1.1", UsageError, r"routes.txt:2: unknown command 'del'"),
        ("route add 10.0.0.1 iif a oif b", InvalidArgument, r"routes.txt:2: group '10.0.0.1'"),
        ("route add 232.1.1.1 oif a", UsageError, r"routes.txt:2: missing input"),
        ("route add 'unterminated", UsageError, r"routes.txt:2: No closing quotation"),
    ],
)
def test_batch_errors_name_file_and_line(line, error, message):
    with pytest.raises(error, match=message):
        parse_batch(["route add 232.1.1.9 iif a oif b", line], "routes.txt")


def test_empty_batch_is_refused(tmp_path):
    path = tmp_path / "empty"
    path.write_text("# nothing\n\n")
    with pytest.raises(InvalidArgument, match="no routes to add"):
        read_batch(str(path))


def test_run_exit_status_for_usage_and_invalid_arguments(capsys):
    assert cli.run(["nonsense"]) == cli.EXIT_USAGE
    assert cli.run(["route", "add", "10.1.1.1", "iif", "a", "oif", "b"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mfc-dbus: unknown object 'nonsense'")
    assert err[1].startswith("mfc-dbus: group '10.1.1.1' is not a multicast address")
    assert len(err) == 2  # one line each, no traceback


def test_help_and_version(capsys):
    assert cli.run(["-h"]) == 0
    assert "route add GROUP" in capsys.readouterr().out
    assert cli.run(["help"]) == 0
    assert "diagnose GROUP" in capsys.readouterr().out
    assert cli.run(["-V"]) == 0
    assert capsys.readouterr().out.startswith("mfc-dbus ")


def test_bus_absent_is_one_line_and_exit_1(capsys, tmp_path):
    status = cli.run(["--address", f"unix:path={tmp_path}/no-bus", "route", "show"])
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err == f"mfc-dbus: cannot connect to the system bus at unix:path={tmp_path}/no-bus: " \
        "No such file or directory\n"  # fmt: skip


def test_polkit_agent_is_registered_for_this_process_and_stopped_by_pid(tmp_path, monkeypatch):
    record = tmp_path / "argv"
    fake = tmp_path / "pkttyagent"
    # Registers (closes the notify fd), then lives until terminated, as the real one.
    fake.write_text(
        "#!/bin/bash\n" f'echo "$@" > {record}\n' 'eval "exec $2>&-"\n' "exec sleep 30\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(cli_agent.os, "geteuid", lambda: 1000)
    agent = cli_agent.PolkitAgent(wanted=True)
    agent.start()
    assert agent.process is not None and agent.process.poll() is None
    argv = record.read_text().split()
    assert argv[0] == "--notify-fd" and argv[2] == "--process"
    pid, start = argv[3].split(",")
    assert int(pid) == os.getpid()
    assert int(start) == cli_agent.process_start_time(os.getpid()) > 0
    process = agent.process
    agent.stop()
    assert process.poll() is not None and agent.process is None


def test_polkit_agent_not_wanted_or_root(monkeypatch):
    agent = cli_agent.PolkitAgent(wanted=False)
    agent.start()
    assert agent.process is None
    monkeypatch.setattr(cli_agent.os, "geteuid", lambda: 0)
    agent = cli_agent.PolkitAgent(wanted=True)
    agent.start()  # root needs no agent: polkit is not asked for uid 0
    assert agent.process is None


def test_every_command_of_the_grammar_has_a_handler():
    assert set(HANDLERS) | set(LOCAL_HANDLERS) == set(GRAMMARS)
    assert not set(HANDLERS) & set(LOCAL_HANDLERS)


def test_a_join_with_host_bits_is_warned_about_as_a_route_is(capsys):
    ready = prepared("group", "join", "eth0", "225.1.2.3/24", "source", "10.1.2.3")
    assert (ready["group"], ready["source"]) == ("225.1.2.0/24", "10.1.2.3")
    assert "mfc-dbus: warning: 225.1.2.3/24 taken as 225.1.2.0/24" in capsys.readouterr().err
    assert prepared("group", "leave", "eth0", "225.1.2.0/24")["group"] == "225.1.2.0/24"
    assert capsys.readouterr().err == ""
    assert prepared("group", "show")["table"] is None
