"""diagnose's host rules (firewall, mrules, interface flags) on recorded inputs.

The files in diagnose_data/ were recorded on Linux 6.18 with nftables 1.0.6, iptables
1.8.9 and iproute2 6.1 in a network namespace (commands in each test's docstring);
a test that needs a counter to rise raises it in its copy of the recording.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from mfc_dbus.cli_diagnose import HostState, Snapshot, diagnose
from mfc_dbus.client import RouteInfo, VifInfo
from mfc_dbus.diagnose import host, iptables, nft
from mfc_dbus.diagnose.firewall import firewall_findings
from mfc_dbus.diagnose.links import multicast_flag_findings, parse_links
from mfc_dbus.diagnose.mrules import mrule_findings, parse_mrules

DATA = Path(__file__).parent / "diagnose_data"
G, S = "233.252.0.1", "192.0.2.1"


def recorded(name: str):
    text = (DATA / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def route(**kw) -> RouteInfo:
    return replace(RouteInfo(S, G, "up0", ("down0",), "installed", "ipv4", 0), **kw)


def nft_with_counters(counts: dict[int, int]) -> dict:
    """The recorded ruleset with the counters of the rules (by handle) set to `counts`."""
    document = copy.deepcopy(recorded("nft_ruleset.json"))
    for item in document["nftables"]:
        rule = item.get("rule")
        if rule and rule["handle"] in counts:
            for statement in rule["expr"]:
                if "counter" in statement:
                    statement["counter"]["packets"] = counts[rule["handle"]]
    return document


def nft_drops(r: RouteInfo, counts: dict[int, int]) -> list[str]:
    before = nft.forward_rules(recorded("nft_ruleset.json"))
    after = nft.forward_rules(nft_with_counters(counts))
    found = firewall_findings(r, before, after, 1)
    return [f.message for f in found if "ip mangle post is drop" not in f.message]


# -- nftables ------------------------------------------------------------------------------------
# nft_ruleset.json: `nft -j list ruleset` of
#   table inet filter { set groups { 233.252.0.0/24, 239.1.1.1 }
#     chain forward { hook forward; policy accept;
#       4: ip daddr 233.252.0.1 counter drop
#       5: iifname "up0" oifname "down*" ip daddr @groups counter reject
#       6: meta l4proto udp ip6 daddr ff3e::db8:1 counter drop
#       7: ip saddr != 192.0.2.0/24 ip daddr 233.252.0.2-233.252.0.9 counter jump sub
#       9: ip daddr { 233.252.0.7, 233.252.1.0/24 } iif "lo" oif "lo" counter drop
#       10: meta pkttype multicast counter accept }
#     chain sub { 11: udp dport 5001 counter drop } }
#   table ip mangle { chain post { hook postrouting; policy drop; 2: iif "lo" counter drop } }


def test_nft_rule_whose_counter_rises_is_named_with_table_chain_handle():
    (message,) = nft_drops(route(), {4: 10})
    assert (
        "nftables rule inet filter forward handle 4 drops it (its counter +10 in 1 s)" in message
    )
    assert "out of down0" in message
    assert "`nft delete rule inet filter forward handle 4`" in message


def test_nft_rule_that_did_not_count_is_not_named():
    assert nft_drops(route(), {}) == []


def test_nft_named_set_wildcard_interfaces_and_reject():
    r = route(group="233.252.0.5", outputs=("down1", "other0"))
    (message,) = nft_drops(r, {5: 3})
    assert "handle 5 rejects it" in message and "out of down1, but" in message
    assert nft_drops(route(group="233.252.0.5", input="eth9"), {5: 3}) == []
    assert nft_drops(route(group="233.252.7.1"), {5: 3}) == []  # not in @groups


def test_nft_family_of_the_match_decides():
    v6 = route(source="2001:db8:1::1", group="ff3e::db8:1", family="ipv6")
    (message,) = nft_drops(v6, {6: 2})
    assert "handle 6 may drop it (its counter +2 in 1 s); it also matches on meta l4proto udp" in (
        message
    )  # a route does not say which protocol its packets carry
    assert nft_drops(route(), {6: 2}) == []  # `ip6 daddr` never matches IPv4
    assert nft_drops(v6, {4: 2}) == []  # `ip daddr` never matches IPv6


def test_nft_jump_carries_its_conditions_into_the_chain():
    r = route(group="233.252.0.3", source="198.51.100.7")
    (message,) = nft_drops(r, {11: 4})
    assert "nftables rule inet filter sub handle 11" in message
    # From 192.0.2.1 the jump (saddr != 192.0.2.0/24) is never taken.
    assert nft_drops(route(group="233.252.0.3"), {11: 4}) == []


def test_nft_interface_by_index_and_anonymous_set():
    assert nft_drops(route(group="233.252.1.9"), {9: 4}) == []  # iif "lo" is not up0
    assert (
        "handle 9" in nft_drops(route(group="233.252.1.9", input="lo", outputs=("lo",)), {9: 4})[0]
    )


def test_nft_rule_without_counter_that_certainly_matches():
    document = recorded("nft_ruleset.json")
    for item in document["nftables"]:
        if item.get("rule", {}).get("handle") == 4:
            item["rule"]["expr"] = [s for s in item["rule"]["expr"] if "counter" not in s]
    rules = nft.forward_rules(document)
    (finding,) = [
        f for f in firewall_findings(route(), rules, rules, 1) if "handle 4" in f.message
    ]
    assert "has no counter" in finding.message and finding.severity == "problem"


def test_nft_rule_without_counter_after_an_accepting_rule_is_not_blamed():
    """As if `meta pkttype multicast accept` (handle 10) had been inserted first."""
    document = recorded("nft_ruleset.json")
    items = document["nftables"]
    (accept,) = [i for i in items if i.get("rule", {}).get("handle") == 10]
    items.remove(accept)
    items.insert(items.index(next(i for i in items if "rule" in i)), accept)
    for item in items:
        if item.get("rule", {}).get("handle") == 4:
            item["rule"]["expr"] = [s for s in item["rule"]["expr"] if "counter" not in s]
    rules = nft.forward_rules(document)
    assert not [f for f in firewall_findings(route(), rules, rules, 1) if "handle 4" in f.message]


def test_nft_policy_drop_without_an_accepting_rule():
    """ip mangle post: hook postrouting, policy drop; its one rule matches iif lo only."""
    rules = nft.forward_rules(recorded("nft_ruleset.json"))
    (finding,) = firewall_findings(route(), rules, rules, 1)
    assert "the policy of nftables chain ip mangle post is drop" in finding.message
    assert "no rule of that chain accepts" in finding.message
    v6 = route(source="2001:db8:1::1", group="ff3e::db8:1", family="ipv6")
    assert firewall_findings(v6, rules, rules, 1) == []  # an ip table: IPv4 only


def test_nft_rules_of_iptables_nft_are_read_there():
    """`iptables-nft -A FORWARD -d 233.252.0.3/32 -o down0 -j DROP` as nft shows it."""
    document = recorded("iptables_nft_ruleset.json")
    before = nft.forward_rules(document)
    document = copy.deepcopy(document)
    document["nftables"][3]["rule"]["expr"][2]["counter"]["packets"] = 7
    after = nft.forward_rules(document)
    (finding,) = firewall_findings(route(group="233.252.0.3"), before, after, 2)
    assert "nftables rule ip filter FORWARD handle 2 drops it (its counter +7 in 2 s)" in (
        finding.message
    )
    assert iptables.is_nft_backend(recorded("iptables_nft_save.txt"))
    (total,) = firewall_findings(route(group="233.252.0.3"), [], after, 0)  # interval 0: totals
    assert "handle 2 drops it (its counter 7)" in total.message


# -- iptables (legacy) ---------------------------------------------------------------------------
# iptables_legacy_save.txt: `iptables-legacy-save -c` after
#   -P FORWARD DROP; -N mcast
#   -A FORWARD -i up0 -o down+ -d 233.252.0.1/32 -j DROP
#   -A FORWARD ! -s 192.0.2.0/24 -d 233.252.0.0/24 -p udp -m udp --dport 5001 -j REJECT
#   -A FORWARD -d 233.252.0.2 -j mcast
#   -A mcast -m pkttype --pkt-type multicast -j DROP
#   -A mcast -m comment --comment "keep the rest" -j ACCEPT
#   -t mangle -A POSTROUTING -o down1 -j DROP; -t mangle -A OUTPUT -j DROP
LEGACY = iptables.Source("iptables-legacy-save", "ipv4")


def legacy_drops(r: RouteInfo, after_text: str) -> list[str]:
    before = iptables.forward_rules(recorded("iptables_legacy_save.txt"), LEGACY)
    after = iptables.forward_rules(after_text, LEGACY)
    return [f.message for f in firewall_findings(r, before, after, 1)]


def counted(line_start: str, packets: int) -> str:
    text = recorded("iptables_legacy_save.txt")
    lines = [
        (
            f"[{packets}:{packets * 36}]" + line[5:]
            if line.startswith(f"[0:0] {line_start}")
            else line
        )
        for line in text.splitlines()
    ]
    return "\n".join(lines)


def test_iptables_rule_whose_counter_rises_is_named():
    (message,) = legacy_drops(route(), counted("-A FORWARD -d 233.252.0.1/32", 12))
    assert "iptables-legacy rule 1 of chain FORWARD in table filter" in message
    assert "(-A FORWARD -d 233.252.0.1/32 -i up0 -o down+ -j DROP)" in message
    assert "drops it (its counter +12 in 1 s)" in message
    assert "`iptables-legacy -t filter -D FORWARD 1`" in message


def test_iptables_user_chain_and_accept_before_the_policy():
    text = counted("-A mcast -m pkttype", 5)
    (message,) = legacy_drops(route(group="233.252.0.2"), text)
    assert "rule 1 of chain mcast" in message
    # 233.252.0.2 may be accepted in mcast: the DROP policy is not blamed for it...
    assert not any("policy" in m for m in legacy_drops(route(group="233.252.0.2"), text))
    # ...but 233.252.0.4 reaches no ACCEPT: once the policy counts, it is named.
    policy = text.replace(":FORWARD DROP [0:0]", ":FORWARD DROP [9:324]")
    (message,) = legacy_drops(route(group="233.252.0.4"), policy)
    assert "the policy of iptables-legacy chain FORWARD in table filter is drop" in message
    assert "(its counter +9 in 1 s)" in message


def test_iptables_negated_source_and_unknown_matches():
    rule = "-A FORWARD ! -s 192.0.2.0/24"
    assert legacy_drops(route(group="233.252.0.8"), counted(rule, 3)) == []  # from 192.0.2.1
    (message,) = legacy_drops(route(group="233.252.0.8", source="203.0.113.5"), counted(rule, 3))
    assert "rule 2 of chain FORWARD" in message and "may reject it" in message
    assert "it also matches on --dport 5001, -p udp" in message


def test_iptables_mangle_postrouting_names_the_output_it_drops():
    r = route(outputs=("down0", "down1"), group="233.252.0.9")
    (message,) = legacy_drops(r, counted("-A POSTROUTING -o down1", 4))
    assert "out of down1, but" in message and "table mangle" in message
    assert legacy_drops(r, counted("-A OUTPUT -j DROP", 4)) == []  # OUTPUT: not forwarded


def test_ip6tables_legacy():
    source = iptables.Source("ip6tables-legacy-save", "ipv6")
    text = recorded("ip6tables_legacy_save.txt")
    before = iptables.forward_rules(text, source)
    after = iptables.forward_rules(text.replace("[0:0] -A", "[6:600] -A"), source)
    v6 = route(source="2001:db8:1::1", group="ff3e::db8:1", family="ipv6")
    (finding,) = firewall_findings(v6, before, after, 1)
    assert "ip6tables-legacy rule 1 of chain FORWARD" in finding.message
    assert firewall_findings(route(), before, after, 1) == []


# -- mrules --------------------------------------------------------------------------------------
def test_route_in_table_100_without_an_mrule():
    """`ip -N -j mrule show` in a fresh namespace: 32767 from all lookup 253 (default)."""
    r = route(table=100)
    (finding,) = mrule_findings(r, parse_mrules(recorded("mrule4_fresh.json")))
    assert finding.code == "no-mrule" and finding.severity == "problem"
    assert "no multicast routing rule leads packets from up0 to table 100" in finding.message
    assert "looks them up in table default (rule 32767: from all lookup default)" in (
        finding.message
    )
    assert finding.message.endswith("add the rule: `ip mrule add iif up0 lookup 100`")
    v6 = route(source="2001:db8:1::1", group="ff3e::db8:1", family="ipv6", table=100)
    (finding,) = mrule_findings(v6, parse_mrules(recorded("mrule6_fresh.json")))
    assert "table main" in finding.message and "`ip -6 mrule add iif up0 lookup 100`" in (
        finding.message
    )


def test_mrule_leading_to_the_table():
    """After `ip mrule add iif up0 lookup 100` (the kernel gave it priority 0)."""
    rules = parse_mrules(recorded("mrule4_iif_up0_table100.json"))
    assert mrule_findings(route(table=100), rules) == []
    assert mrule_findings(route(), parse_mrules(recorded("mrule4_fresh.json"))) == []
    # The default table's route no longer sees up0's packets:
    (finding,) = mrule_findings(route(), rules)
    assert "the kernel looks them up in table 100 (rule 0: from all iif up0 lookup 100)" in (
        finding.message
    )
    assert "rule 0 comes first" in finding.message
    # Another input still reaches table 100 only through a rule of its own.
    assert mrule_findings(route(table=100, input="up1"), rules)[0].code == "no-mrule"


def test_mrule_with_a_mark_may_lead_there_and_blackhole_takes_it():
    """pref 100: iif up0 fwmark 7 lookup 100; pref 200: iif up0 blackhole."""
    rules = parse_mrules(recorded("mrule4_fwmark_blackhole.json"))
    assert mrule_findings(route(table=100), rules) == []  # a mark may be set: not certain
    (finding,) = mrule_findings(route(table=101), rules)
    assert "gives them rule action blackhole (rule 200: from all iif up0 blackhole)" in (
        finding.message
    )
    assert "`ip mrule add iif up0 lookup 101 pref 199`" in finding.message


# -- interface flags -----------------------------------------------------------------------------
def test_interface_with_multicast_off():
    """`ip -j link show` after `ip link set down1 multicast off`."""
    links = parse_links(recorded("links_down1_multicast_off.json"))
    assert "MULTICAST" not in links["down1"] and "MULTICAST" in links["down0"]
    r = route(outputs=("down0", "down1"))
    (finding,) = multicast_flag_findings(r, links, forwarding=False)
    assert finding.code == "no-multicast-flag" and finding.severity == "problem"
    assert "its output down1 has multicast off" in finding.message
    assert "`ip link set down1 multicast on`" in finding.message
    (note,) = multicast_flag_findings(r, links, forwarding=True)
    assert note.severity == "info" and "forwards through it regardless" in note.message
    assert multicast_flag_findings(route(input="nosuch0"), links, False) == []


# -- the whole diagnosis -------------------------------------------------------------------------
def vifs(up_in: int = 0, down_out: int = 0) -> list[VifInfo]:
    return [
        VifInfo("up0", 0, "ipv4", 0, 1, False, "installed", up_in, 0),
        VifInfo("down0", 1, "ipv4", 0, 1, False, "installed", 0, down_out),
    ]


LINKS = parse_links(recorded("links_down1_multicast_off.json"))


def test_firewall_drop_replaces_forwarding():
    before = HostState(LINKS, firewall=nft.forward_rules(recorded("iptables_nft_ruleset.json")),
                       firewall_read=True)  # fmt: skip
    document = copy.deepcopy(recorded("iptables_nft_ruleset.json"))
    document["nftables"][3]["rule"]["expr"][2]["counter"]["packets"] = 10
    after = replace(before, firewall=nft.forward_rules(document))
    r = route(group="233.252.0.3")
    result = diagnose(
        "233.252.0.3", None,
        Snapshot([replace(r, packets=5)], vifs(5, 5), before),
        Snapshot([replace(r, packets=15)], vifs(15, 15), after), 1,
    )  # fmt: skip
    assert [f.code for f in result.findings] == ["firewall"] and not result.healthy
    # Counters that did not move: forwarding as before.
    calm = diagnose(
        "233.252.0.3", None,
        Snapshot([replace(r, packets=5)], vifs(5, 5), before),
        Snapshot([replace(r, packets=15)], vifs(15, 15), before), 1,
    )  # fmt: skip
    assert [f.code for f in calm.findings] == ["forwarding"] and calm.healthy


def test_missing_mrule_comes_before_no_packets_and_is_named_once():
    state = HostState(LINKS, {"ipv4": parse_mrules(recorded("mrule4_fresh.json"))})
    template = route(source="*", table=100)
    learned = route(table=100, state="learned")
    result = diagnose(G, None, Snapshot([template, learned], [], state),
                      Snapshot([template, learned], [], state), 1)  # fmt: skip
    assert [f.code for f in result.findings] == ["no-mrule", "no-packets"]


def test_interface_flag_in_a_diagnosis():
    state = HostState(LINKS)
    r = route(outputs=("down1",))
    result = diagnose(G, S, Snapshot([r], [], state), Snapshot([r], [], state), 1)
    assert [f.code for f in result.findings] == ["no-multicast-flag", "no-packets"]


def test_host_of_another_namespace_is_not_judged():
    """The service's interfaces are not here: nothing of this host is reported."""
    state = HostState({"eth0": frozenset()}, {"ipv4": parse_mrules(recorded("mrule4_fresh.json"))})
    r = route(table=100)
    result = diagnose(G, S, Snapshot([r], [], state), Snapshot([r], [], state), 1)
    assert [f.code for f in result.findings] == ["no-packets"]


def test_unreadable_firewall_is_a_note():
    state = HostState(LINKS, unread=("nft -j list ruleset: Operation not permitted",))
    r = route()
    result = diagnose(G, S, Snapshot([replace(r, packets=1)], vifs(1, 1), state),
                      Snapshot([replace(r, packets=4)], vifs(4, 4), state), 1)  # fmt: skip
    assert [f.code for f in result.findings] == ["forwarding", "firewall-unread"]
    assert result.healthy and "Operation not permitted" in result.findings[1].message


def test_a_missing_tool_is_unreadable_not_an_error():
    with pytest.raises(host.Unreadable, match="mfc-no-such-tool is not installed"):
        host.run("mfc-no-such-tool", "-j")


# -- a group nobody joined behind IGMP/MLD snooping ---------------------------------------
def test_memberships_of_ip_maddr(tmp_path):
    from mfc_dbus.diagnose.joins import parse_memberships

    document = [
        {"ifname": "up0", "maddr": [
            {"family": "link", "address": "01:00:5e:00:00:01"},
            {"family": "inet", "address": "233.252.0.1"},
            {"family": "inet6", "address": "ff3e:0::db8:1"},
        ]},
        {"ifname": "lo"},
    ]  # fmt: skip
    assert parse_memberships(document) == {
        "up0": frozenset({"233.252.0.1", "ff3e::db8:1"}),
        "lo": frozenset(),
    }


def _sysfs(tmp_path, bridge: str, snooping: str, ports: list[str]):
    (tmp_path / bridge / "bridge").mkdir(parents=True)
    (tmp_path / bridge / "bridge" / "multicast_snooping").write_text(snooping + "\n")
    for port in ports:
        (tmp_path / port / "brport").mkdir(parents=True)
        (tmp_path / port / "brport" / "bridge").symlink_to(tmp_path / bridge)
    return tmp_path


def test_snooping_bridges_and_their_ports(tmp_path):
    from mfc_dbus.diagnose.joins import snooping_bridge

    sysfs = _sysfs(tmp_path, "br0", "1", ["eth0"])
    (sysfs / "eth9").mkdir()
    assert snooping_bridge("br0", sysfs) == "br0"
    assert snooping_bridge("eth0", sysfs) == "br0"
    assert snooping_bridge("eth9", sysfs) is None
    quiet = _sysfs(tmp_path / "other", "br1", "0", ["eth1"])
    assert snooping_bridge("br1", quiet) is None and snooping_bridge("eth1", quiet) is None


def test_not_joined_is_a_problem_behind_a_local_snooping_bridge():
    from mfc_dbus.client import RouteInfo
    from mfc_dbus.diagnose.joins import not_joined_finding

    route = RouteInfo("192.0.2.1", "233.252.0.1", "eth0", ("eth1",))
    joined = {"eth0": frozenset({"224.0.0.1"})}
    finding = not_joined_finding(route, joined, "br0")
    assert finding is not None and finding.severity == "problem"
    assert "eth0 is a port of br0, which is a bridge with IGMP/MLD snooping" in finding.message
    assert "`mgroup from eth0 source 192.0.2.1 group 233.252.0.1`" in finding.message
    hint = not_joined_finding(route, joined, None)
    assert hint is not None and hint.severity == "info"
    assert not_joined_finding(route, {"eth0": frozenset({"233.252.0.1"})}, "br0") is None
    assert not_joined_finding(route, {}, None) is None  # the input is not on this host
    prefix = RouteInfo("*", "233.252.0.0/24", "eth0", ("eth1",))
    assert not_joined_finding(prefix, joined, "br0") is None  # a prefix: nothing to name
