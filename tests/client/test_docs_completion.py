"""Man pages, README, the D-Bus API doc and bash completion stay in step with the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mfc_dbus import cli_grammar as grammar
from mfc_dbus.client import ACTION_BY_METHOD

ROOT = Path(__file__).resolve().parents[2]
MAN1 = ROOT / "man" / "mfc-dbus.1"
MAN8 = ROOT / "man" / "mfc-dbusd.8"
MAN5 = ROOT / "man" / "mfc-dbus.conf.5"
DOC = ROOT / "README.md"
API_DOC = ROOT / "docs" / "dbus-api.md"
COMPLETION = ROOT / "completion" / "mfc-dbus.bash"
METHODS = sorted({*ACTION_BY_METHOD, "ListRoutes", "ListVifs", "ListGroups"})


def test_every_command_is_documented_in_the_man_page_and_readme():
    man = MAN1.read_text().replace("\\-", "-").replace("\\fP", "").replace("\\fI", "")
    doc = DOC.read_text()
    for obj in grammar.OBJECTS:
        assert re.search(rf"^\.B(R)? {obj}\b", man, re.M) or f".B {obj} " in man, obj
        assert re.search(rf"^(mfc-dbus )?{obj}\b", doc, re.M), obj
    for obj, verbs in grammar.VERBS.items():
        for verb in verbs:
            if verb not in grammar.VERB_ALIASES:
                assert f"{obj} {verb}" in man and f"{obj} {verb}" in doc, (obj, verb)
    for flag in grammar.GLOBAL_FLAGS:
        assert flag in man and flag in doc, flag


def test_the_api_doc_gives_a_busctl_call_for_every_method():
    doc = API_DOC.read_text()
    for method in METHODS:
        assert re.search(rf"^\| {method}\b.*\| `{method}[ `]", doc, re.M), method


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
@pytest.mark.parametrize("page", [MAN1, MAN8, MAN5], ids=lambda p: p.name)
def test_man_pages_render_without_warnings(page):
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == ""


def complete(*words: str) -> list[str]:
    script = (
        f"source {COMPLETION}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _mfc_dbus\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", script, "bash", "mfc-dbus", *words],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion():
    assert complete("") == list(grammar.OBJECTS)
    assert complete("r") == ["route", "reload"]
    assert complete("route", "") == [*grammar.VERBS["route"]]
    assert complete("route", "del-output", "233.252.0.1", "i") == ["iif"]
    assert complete("route", "add", "233.252.0.1", "iif", "l") == ["lo"]
    assert "lo" in complete("route", "add", "233.252.0.1", "iif", "lo", "oif", "")
    assert complete("vif", "show", "family", "") == ["ipv4", "ipv6"]
    assert complete("config", "") == ["check", "export", "import"]
    assert complete("group", "") == ["join", "leave", "show", "list"]
    assert complete("g", "join", "l") == ["lo"]
    assert complete("group", "join", "lo", "233.252.0.1", "s") == ["source"]
    assert "--oifs" in complete("mfc", "add", "--")


def test_every_relative_link_in_the_documentation_resolves():
    pages = [DOC, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page.name, target)
            checked += 1
    assert checked >= 4  # README -> docs/ and back at least
