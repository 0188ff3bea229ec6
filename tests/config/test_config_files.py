"""Configuration files: smcroute.conf's syntax, includes, and every problem named with
its file:line:column."""

from pathlib import Path

import pytest

from mfc_dbus.config import ConfigurationError, load_configuration, load_file
from mfc_dbus.config.syntax import tokens

EXAMPLE = Path(__file__).with_name("smcroute-example.conf")  # smcroute.conf(5)'s EXAMPLE


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigurationError) as refused:
        load_file(path)
    return [str(problem) for problem in refused.value.problems]


def test_smcroutes_own_example_loads_unchanged():
    configuration = load_file(EXAMPLE)
    routes = {(r.input, r.source, r.group, r.outputs) for r in configuration.routes}
    assert routes == {
        ("eth0", "192.168.1.42", "225.1.2.3", ("eth1", "eth2")),
        ("virbr0", "192.168.123.110", "225.1.2.4", ("eth0",)),
        ("eth0", "*", "225.3.2.1", ("eth1", "eth2")),
        ("eth0", "*", "225.0.0.0/24", ("eth1", "eth2")),
    }
    joins = {(j.interface, j.source, j.group) for j in configuration.joins}
    assert ("virbr0", "192.168.123.110", "225.1.2.4") in joins
    assert ("eth0", "*", "225.0.0.0/24") in joins and len(joins) == 4
    thresholds = {i.interface: i.ttl_threshold for i in configuration.interfaces}
    assert thresholds == {"eth0": 11, "eth1": 3, "eth2": 5, "virbr0": 5}
    assert all(route.table == 0 for route in configuration.routes)
    assert configuration.routes[0].origin.path == str(EXAMPLE)


def test_keywords_in_any_order_comments_anywhere_and_our_table(tmp_path):
    path = write(
        tmp_path,
        "a.conf",
        "# heading\n"
        "mroute group ff3e::8000:1 table 7 from eth0 source 2001:db8::1 to eth1 # tail\n"
        "ssmgroup from eth0 source 192.0.2.1 group 232.1.1.1\n"
        "phyint eth+ mrdisc ttl-threshold 2\n",
    )
    configuration = load_file(path)
    (route,) = configuration.routes
    assert (route.input, route.source, route.group, route.outputs, route.table) == (
        "eth0",
        "2001:db8::1",
        "ff3e::8000:1",
        ("eth1",),
        7,
    )
    assert (route.origin.line, route.origin.column) == (2, 1)
    (join,) = configuration.joins
    assert (join.interface, join.source, join.group) == ("eth0", "192.0.2.1", "232.1.1.1")
    (interface,) = configuration.interfaces
    assert (interface.interface, interface.enabled, interface.mrdisc) == ("eth+", True, True)


def test_tokens_carry_their_columns():
    assert [(t.text, t.column) for t in tokens("  mroute  from eth0#c")] == [
        ("mroute", 3),
        ("from", 11),
        ("eth0", 16),
    ]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("mroute from eth0 group 225.1.1.1", "1:1: mroute needs 'to OIF [OIF ...]'"),
        ("mroute from eth0 group 225.1.1.1 to", "1:34: 'to' needs at least one interface"),
        ("mroute from eth0 to eth1", "1:1: mroute needs 'group GROUP[/LEN]'"),
        ("mroute group 225.1.1.1 to eth1", "1:1: mroute needs 'from IIF'"),
        ("mroute from eth0 group 10.0.0.1 to eth1", "1:24: group '10.0.0.1' is not a multicast"),
        ("mroute from eth0 group 225.1.1.1 group 225.1.1.2 to eth1", "1:34: 'group' given twice"),
        ("mroute from eth0 source 239.1.1.1 group 225.1.1.1 to e1", "1:25: source '239.1.1.1'"),
        ("mroute from eth0 source 2001:db8::1 group 225.1.1.1 to e1", "different families"),
        ("mroute from eth0 group 225.1.1.1 table x to eth1", "1:40: table 'x' is not a number"),
        ("mroute from eth0 group 225.1.1.1 to eth/1", "1:37: interface name 'eth/1'"),
        ("mroute from eth0 group 225.1.1.1 bogus 1 to e1", "1:34: unexpected 'bogus' in mroute"),
        ("mroute from", "1:8: 'from' needs a value"),
        ("mroute from eth+ source 10.0.0.1 group 225.1.1.1 to e1", "1:13: interface wildcard"),
        ("phyint", "1:1: phyint needs an interface name"),
        ("phyint eth0 ttl-threshold 0", "1:27: ttl-threshold '0' is not valid; use 1 to 255"),
        ("phyint eth0 enable disable", "1:20: phyint is either enable or disable"),
        ("phyint eth0 disable mrdisc", "1:21: mrdisc on a disabled phyint would never run"),
        ("mgroup from eth0", "1:1: mgroup needs 'group GROUP[/LEN]'"),
        ("mgroup from eth0 group 225.1.1.1 to eth1", "1:34: unexpected 'to' in mgroup"),
        ("route add eth0", "1:1: unknown command 'route'; valid commands: phyint, mgroup"),
        ("include a b", "1:11: include takes one file or glob pattern"),
    ],
)
def test_each_problem_is_named_at_its_place(tmp_path, line, expected):
    path = write(tmp_path, "bad.conf", "# first line is a comment\n" + line + "\n")
    (problem,) = problems_of(path)
    located = expected.replace("1:", "2:", 1) if expected[0].isdigit() else expected
    assert located in problem
    assert problem.startswith(str(path))


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = write(tmp_path, "bad.conf", "bogus\nmroute from eth0 to eth1\nphyint eth0 mrdisc x\n")
    found = problems_of(path)
    assert [problem.split(": ")[0] for problem in found] == [
        f"{path}:1:1",
        f"{path}:2:1",
        f"{path}:3:20",
    ]


def test_duplicates_across_files_name_both_places(tmp_path):
    write(tmp_path, "conf.d/10-a.conf", "mroute from eth0 group 225.1.1.1 to eth1\n")
    write(tmp_path, "conf.d/20-b.conf", "\nmroute from eth0 group 225.1.1.1 to eth2\n")
    main = write(tmp_path, "mfc-dbus.conf", "phyint eth0\n")
    with pytest.raises(ConfigurationError) as refused:
        load_configuration(main)
    (problem,) = refused.value.problems
    assert str(problem).startswith(f"{tmp_path}/conf.d/20-b.conf:2:1: route * 225.1.1.1")
    assert f"already configured at {tmp_path}/conf.d/10-a.conf:1:1" in str(problem)


def test_include_globs_in_name_order_relative_to_the_including_file(tmp_path):
    write(tmp_path, "parts/b.conf", "mroute from eth0 group 225.1.1.2 to eth1\n")
    write(tmp_path, "parts/a.conf", "mroute from eth0 group 225.1.1.1 to eth1\n")
    write(tmp_path, "parts/ignored.txt", "not a configuration\n")
    main = write(tmp_path, "main.conf", "include parts/*.conf\ninclude /nonexistent/*.conf\n")
    groups = [route.group for route in load_file(main).routes]
    assert groups == ["225.1.1.1", "225.1.1.2"]


def test_drop_ins_are_read_once_even_when_the_main_file_includes_them(tmp_path):
    write(tmp_path, "conf.d/a.conf", "mroute from eth0 group 225.1.1.1 to eth1\n")
    main = write(tmp_path, "mfc-dbus.conf", "include conf.d/*.conf\n")
    assert len(load_configuration(main).routes) == 1
    main.unlink()  # no main file: the drop-ins alone
    assert len(load_configuration(main).routes) == 1


def test_include_loops_missing_and_unreadable_files_are_named(tmp_path):
    write(tmp_path, "a.conf", "include b.conf\n")
    write(tmp_path, "b.conf", "\ninclude a.conf\n")
    assert problems_of(tmp_path / "a.conf") == [
        f"{tmp_path}/b.conf:2:1: include loop: {tmp_path}/a.conf -> {tmp_path}/b.conf"
        f" -> {tmp_path}/a.conf"
    ]
    main = write(tmp_path, "main.conf", "include missing.conf\n")
    (problem,) = problems_of(main)
    assert problem.startswith(f"{main}:1:1: cannot read {tmp_path}/missing.conf: No such file")
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"mroute \xff\n")
    (problem,) = problems_of(binary)
    assert problem.startswith(f"{binary}: cannot read {binary}")


def test_no_configuration_at_all_is_empty(tmp_path):
    configuration = load_configuration(tmp_path / "mfc-dbus.conf")
    assert (configuration.routes, configuration.joins, configuration.interfaces) == ([], [], [])


def test_rendered_text_reads_back_as_the_same_configuration(tmp_path):
    from dataclasses import replace

    from mfc_dbus.config.render import render

    original = load_file(EXAMPLE)
    text = render(original.interfaces, original.joins, original.routes)
    assert text.splitlines()[0] == "phyint eth0 enable ttl-threshold 11"
    assert "mroute from eth0 source 192.168.1.42 group 225.1.2.3 to eth1 eth2" in text
    again = load_file(write(tmp_path, "exported.conf", text))

    def without_origin(items):
        return sorted((replace(item, origin=None) for item in items), key=repr)

    for section in ("routes", "joins", "interfaces"):
        assert without_origin(getattr(again, section)) == without_origin(
            getattr(original, section)
        )
    tabled = load_file(write(tmp_path, "t.conf", "mroute from e0 group ff3e::1 table 9 to e1\n"))
    assert render([], [], tabled.routes) == "mroute from e0 group ff3e::1 table 9 to e1\n"


def test_a_group_may_have_a_route_per_input_but_an_exact_route_one_input(tmp_path):
    write(tmp_path, "conf.d/10-a.conf",
          "mroute from eth0 group 225.1.1.1 to eth2\n"
          "mroute from eth0 source 10.0.0.1 group 225.1.1.1 to eth2\n")  # fmt: skip
    write(tmp_path, "conf.d/20-b.conf",
          "mroute from eth1 group 225.1.1.1 to eth2\n"  # another input: another route
          "mroute from eth+ group 225.1.1.1 to eth2\n"
          "mroute from eth1 source 10.0.0.1 group 225.1.1.1 to eth2\n")  # fmt: skip
    main = write(tmp_path, "mfc-dbus.conf", "")
    with pytest.raises(ConfigurationError) as refused:
        load_configuration(main)
    (problem,) = refused.value.problems
    assert str(problem).startswith(f"{tmp_path}/conf.d/20-b.conf:3:1: route 10.0.0.1 225.1.1.1")
    assert f"already configured at {tmp_path}/conf.d/10-a.conf:2:1" in str(problem)


def test_host_bits_are_masked_with_a_warning_at_their_place(tmp_path, capsys):
    from mfc_dbus.cli import run

    path = write(
        tmp_path,
        "a.conf",
        "mroute from eth0 source 10.1.2.3/16 group 225.1.2.3/24 to eth1\n"
        "mgroup from eth0 group ff3e::1:2/112\n",
    )
    configuration = load_file(path)
    (route,) = configuration.routes
    assert (route.source, route.group) == ("10.1.0.0/16", "225.1.2.0/24")
    assert configuration.joins[0].group == "ff3e::1:0/112"
    assert [str(w) for w in configuration.warnings] == [
        f"{path}:1:25: 10.1.2.3/16 taken as 10.1.0.0/16",
        f"{path}:1:43: 225.1.2.3/24 taken as 225.1.2.0/24",
        f"{path}:2:24: ff3e::1:2/112 taken as ff3e::1:0/112",
    ]
    assert run(["config", "check", str(path)]) == 0  # accepted
    err = capsys.readouterr().err
    assert f"mfc-dbus: warning: {path}:1:43: 225.1.2.3/24 taken as 225.1.2.0/24" in err
