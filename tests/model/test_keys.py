"""Route and VIF keys (mfc_dbus.model): the one reader of text, the forms it accepts
and refuses (with messages that name the value), the round trip text -> key -> text,
and keys as values (hash, equality, immutability). No root, no kernel."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfc_dbus.errors import InvalidArgument
from mfc_dbus.model import (
    Family,
    Route,
    RouteKey,
    VifConfig,
    VifKey,
    format_address,
    format_prefix,
    host_route,
    make_route_key,
    masked_prefix,
    source_text,
    validate_interface_name,
)

V4, V6 = Family.IPV4, Family.IPV6


# -- accepted forms -------------------------------------------------------------------
@pytest.mark.parametrize(
    "source, group, table, texts, family, template, number",
    [
        ("10.0.0.1", "233.252.0.1", 0, ("10.0.0.1", "233.252.0.1"), V4, False, 0),
        ("*", "233.252.0.1", 0, ("*", "233.252.0.1"), V4, True, 0),
        ("", "233.252.0.1", 7, ("*", "233.252.0.1"), V4, True, 7),
        ("  ", "233.252.0.1", 0, ("*", "233.252.0.1"), V4, True, 0),
        (" 10.0.0.1 ", " 233.252.0.1 ", 0, ("10.0.0.1", "233.252.0.1"), V4, False, 0),
        ("10.1.0.0/16", "239.0.0.0/8", 0, ("10.1.0.0/16", "239.0.0.0/8"), V4, True, 0),
        ("10.0.0.1/32", "233.252.0.1/32", 0, ("10.0.0.1", "233.252.0.1"), V4, False, 0),
        ("0.0.0.0/0", "232.1.1.1", 0, ("*", "232.1.1.1"), V4, True, 0),
        ("::/0", "232.1.1.1", 0, ("*", "232.1.1.1"), V4, True, 0),  # any is any family
        # smcroute's "any source": the unspecified address itself, not a literal entry.
        ("0.0.0.0", "232.1.1.1", 0, ("*", "232.1.1.1"), V4, True, 0),
        ("::", "ff3e::1", 0, ("*", "ff3e::1"), V6, True, 0),
        ("192.0.2.1", "224.0.1.1", 0, ("192.0.2.1", "224.0.1.1"), V4, False, 0),
        ("*", "224.0.1.0/24", 0, ("*", "224.0.1.0/24"), V4, True, 0),
        ("2001:db8::1", "ff3e::1", 0, ("2001:db8::1", "ff3e::1"), V6, False, 0),
        ("2001:DB8:0:0::1", "FF3E:0::1", 0, ("2001:db8::1", "ff3e::1"), V6, False, 0),
        ("*", "ff3e::/16", 0, ("*", "ff3e::/16"), V6, True, 0),
        ("2001:db8::/32", "ff05::1:3", 9, ("2001:db8::/32", "ff05::1:3"), V6, True, 9),
        ("::ffff:192.0.2.1", "ff03::1", 0, ("::ffff:192.0.2.1", "ff03::1"), V6, False, 0),
        ("10.0.0.1", "233.252.0.1", 253, ("10.0.0.1", "233.252.0.1"), V4, False, 0),
        ("10.0.0.1", "233.252.0.1", 254, ("10.0.0.1", "233.252.0.1"), V4, False, 254),
        ("*", "ff3e::1", 254, ("*", "ff3e::1"), V6, True, 0),
        ("*", "ff3e::1", 253, ("*", "ff3e::1"), V6, True, 253),
        ("*", "233.252.0.1", 2**32 - 1, ("*", "233.252.0.1"), V4, True, 2**32 - 1),
    ],
)  # fmt: skip
def test_accepted_forms(source, group, table, texts, family, template, number):
    key = make_route_key(source, group, table)
    assert key.texts == texts
    assert key.family is family
    assert key.is_template is template
    assert key.table == number
    bits = 32 if family is V4 else 128
    assert len(key.group) == len(key.source) == bits // 8
    if texts[0] == "*":
        assert (key.source, key.source_len) == (bytes(bits // 8), 0)


def test_an_exact_key_is_its_kernel_entry():
    key = make_route_key("10.0.0.1", "233.252.0.1")
    assert key.sg == (bytes([10, 0, 0, 1]), bytes([233, 252, 0, 1]))
    assert (key.source_len, key.group_len) == (32, 32)
    assert str(key) == "(10.0.0.1, 233.252.0.1)"
    assert str(make_route_key("", "ff3e::1", 5)) == "(*, ff3e::1) table 5"
    assert repr(key) == "make_route_key('10.0.0.1', '233.252.0.1', 0)"


# -- refused forms --------------------------------------------------------------------
@pytest.mark.parametrize(
    "source, group, message",
    [
        ("", "", "group is empty"),
        ("", "   ", "group is empty"),
        ("", None, "group None is not valid: it must be a string"),
        ("", 5, "group 5 is not valid: it must be a string"),
        ("", "not-an-ip", "group 'not-an-ip' is not a valid address or prefix; give a multicast"),
        ("", "233.252.0.01", "group '233.252.0.01' is not a valid address"),
        ("", "233.1.1", "group '233.1.1' is not a valid address"),
        ("", "233.252.0.1:5001", "'233.252.0.1:5001' is not a valid address"),
        ("", "２３３.1.1.1", r"'２３３.1.1.1' is not a valid address"),
        ("", "233.252.0.1\x00", r"'233.252.0.1\\x00' is not a valid address"),
        ("", "ff3e::1%eth0", "is not a valid address"),
        ("", "239.0.0.0/255.0.0.0", "the length after '/' must be 0 to 32"),
        ("", "239.1.1.1/33", r"'239.1.1.1/33' is not a valid prefix: the length after '/' must "
                             "be 0 to 32"),
        ("", "239.0.0.0/-1", "must be 0 to 32"),
        ("", "239.0.0.0/8/8", "must be 0 to 32"),
        ("", "239.0.0.0/", "must be 0 to 32"),
        ("", "ff3e::1/129", "must be 0 to 128"),
        ("", "192.0.2.55", "group '192.0.2.55' is not a multicast address; valid groups are in "
                           r"224.0.0.0/4 \(IPv4\) or ff00::/8 \(IPv6\)"),
        ("", "10.0.0.0/8", "group '10.0.0.0/8' is not a multicast address"),
        ("", "224.0.0.0/3", "group '224.0.0.0/3' is not a multicast address"),
        ("", "2001:db8::5", "group '2001:db8::5' is not a multicast address"),
        ("", "fe80::/10", "is not a multicast address"),
        ("", "224.0.0.5", r"group '224.0.0.5' is link-local \(224.0.0.0/24\), which the kernel"),
        ("", "224.0.0.0/24", "group '224.0.0.0/24' is link-local"),
        ("", "224.0.0.0/23", "group '224.0.0.0/23' is link-local"),
        ("", "224.0.0.0/4", "group '224.0.0.0/4' is link-local"),
        ("", "ff02::1", r"group 'ff02::1' has interface- or link-local scope"),
        ("", "ff01::fb", "group 'ff01::fb' has interface- or link-local scope"),
        ("", "ff00::/8", "group 'ff00::/8' has interface- or link-local scope"),
        ("host.example", "233.252.0.1", "source 'host.example' is not a valid address or "
                                         "prefix; give a unicast address"),
        (5, "233.252.0.1", "source 5 is not valid: it must be a string"),
        ("10.0.0.0/33", "233.252.0.1", "source '10.0.0.0/33' is not a valid prefix"),
        ("224.0.0.0/3", "232.1.1.1", "source '224.0.0.0/3' is a multicast address"),
        ("233.252.0.9", "233.252.0.1", "source '233.252.0.9' is a multicast address; a source "
                                       "must be a unicast sender"),
        ("ff3e::9", "ff3e::1", "source 'ff3e::9' is a multicast address"),
        ("2001:db8::1", "233.252.0.1", "source '2001:db8::1' and group '233.252.0.1' are of "
                                       "different families; use two IPv4 or two IPv6"),
        ("192.0.2.1", "ff3e::1", "source '192.0.2.1' and group 'ff3e::1' are of different"),
    ],
)  # fmt: skip
def test_refused_forms_name_the_value(source, group, message):
    with pytest.raises(InvalidArgument, match=message):
        make_route_key(source, group)


@pytest.mark.parametrize("table", [-1, 2**32, True, "0", 1.5, None])
def test_refused_tables(table):
    with pytest.raises(InvalidArgument, match=f"table {table!r} is not valid; use 0"):
        make_route_key("", "233.252.0.1", table)


# -- the constructor from packed values --------------------------------------------
G4, S4 = bytes([233, 252, 0, 1]), bytes([10, 0, 0, 1])


def test_packed_keys_are_valid_by_construction():
    assert RouteKey(0, (S4, G4), 32, 32) == make_route_key("10.0.0.1", "233.252.0.1")
    assert RouteKey(3, (bytes(4), G4), 0, 32) == make_route_key("*", "233.252.0.1", 3)


@pytest.mark.parametrize(
    "fields, message",
    [
        ((0, S4, 32, bytes([224, 0, 0, 5]), 32), "'224.0.0.5' is link-local"),
        ((0, S4, 32, bytes([10, 0, 0, 0]), 8), "'10.0.0.0/8' is not a multicast address"),
        ((0, S4, 32, G4, 24), r"group .* is not a network address and length"),
        ((0, S4, 32, G4[:3], 24), "is not a packed address and length"),
        ((0, S4, 32, "233.252.0.1", 32), "is not a packed address and length"),
        ((0, S4, 33, G4, 32), "is not a packed ipv4 network address"),
        ((0, S4, 8, G4, 32), "is not a packed ipv4 network address"),
        ((0, S4, 0, G4, 32), "the zero address and 0 for any source"),
        ((0, None, 0, G4, 32), "is not a packed ipv4 network address"),
        ((0, bytes(16), 128, G4, 32), "are of different families"),
        ((0, G4, 32, G4, 32), "source '233.252.0.1' is a multicast address"),
        ((-1, S4, 32, G4, 32), "table -1 is not valid"),
        ((False, S4, 32, G4, 32), "table False is not valid"),
    ],
)  # fmt: skip
def test_packed_keys_refused(fields, message):
    table, source, source_len, group, group_len = fields
    with pytest.raises(InvalidArgument, match=message):
        RouteKey(table, (source, group), source_len, group_len)
    with pytest.raises(InvalidArgument, match="is not a packed \\(source, group\\)"):
        RouteKey(table, [source, group], source_len, group_len)  # type: ignore[arg-type]


# -- keys as values ------------------------------------------------------------------
def test_hash_and_equality_follow_the_value():
    spellings = [
        make_route_key("2001:db8::1", "ff3e::1"),
        make_route_key(" 2001:DB8:0::1 ", "ff3e:0:0::1"),
        make_route_key("2001:db8::1/128", "ff3e::1/128", 0),
        make_route_key("2001:db8::1", "ff3e::1", 254),  # the kernel's id of table 0
    ]
    assert len(set(spellings)) == 1 and len({hash(k) for k in spellings}) == 1
    others = [
        make_route_key("2001:db8::1", "ff3e::1", 1),
        make_route_key("*", "ff3e::1"),
        make_route_key("2001:db8::/64", "ff3e::1"),
        make_route_key("2001:db8::2", "ff3e::1"),
        make_route_key("2001:db8::1", "ff3e::2"),
    ]
    assert len(set(spellings + others)) == 1 + len(others)
    routes = {key: n for n, key in enumerate(others)}
    assert routes[make_route_key("*", "ff3e::1/128")] == 1


def test_keys_are_immutable_slots_values():
    key = make_route_key("10.0.0.1", "233.252.0.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.table = 1  # type: ignore[misc]
    assert not hasattr(key, "__dict__")
    assert dataclasses.replace(key, table=4) == make_route_key("10.0.0.1", "233.252.0.1", 4)
    with pytest.raises(InvalidArgument):
        dataclasses.replace(key, sg=(key.source, bytes([224, 0, 0, 9])))


# -- properties against ipaddress ----------------------------------------------------------
def networks(version: int, multicast: bool):
    """(text, network) of random network addresses: multicast groups the kernel forwards,
    or unicast sources."""
    bits = 32 if version == 4 else 128
    network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network

    def build(address: int, length: int):
        if multicast:
            length = max(length, 5 if version == 4 else 16)  # 232.0.0.0/5 at the widest
            top = (0xE if version == 4 else 0xFF0E) << (bits - (4 if version == 4 else 16))
            rest = address & ((1 << (bits - (4 if version == 4 else 16))) - 1)
            if version == 4:
                rest |= 1 << 27  # 232.0.0.0 and up: clear of 224.0.0.0/24
            address = top | rest
        elif version == 4:
            address &= 0xDFFFFFFF  # below 224.0.0.0 ... or from 240.0.0.0
        else:
            address &= ~(0xFF << 120)  # not ff00::/8
        network = network_class((address, length), strict=False)
        return (str(network) if length < bits else str(network.network_address)), network

    return st.builds(build, st.integers(0, 2**bits - 1), st.integers(1, bits))


@given(st.sampled_from([4, 6]).flatmap(lambda v: st.tuples(networks(v, False), networks(v, True))))
def test_text_round_trip_and_ipaddress_agree(pair):
    (source_text_, source), (group_text, group) = pair
    key = make_route_key(source_text_, group_text)
    assert ipaddress.ip_network(key.texts[0]) == source
    assert ipaddress.ip_network(key.texts[1]) == group
    assert make_route_key(*key.texts) == key  # text -> key -> text -> the same key
    assert key.is_template == (source.prefixlen < source.max_prefixlen or
                               group.prefixlen < group.max_prefixlen)  # fmt: skip


@given(
    st.sampled_from([4, 6]).flatmap(
        lambda v: st.tuples(networks(v, False), networks(v, True), st.ip_addresses(v=v),
                            st.ip_addresses(v=v))  # fmt: skip
    )
)
def test_covers_is_prefix_membership(case):
    (source_text_, source), (group_text, group), address, destination = case
    key = make_route_key(source_text_, group_text)
    # A flow inside the group prefix, and a random one.
    inside = group.network_address + (int(destination) % group.num_addresses)
    for flow_group in (inside, destination):
        expected = address in source and flow_group in group
        assert key.covers(address.packed, flow_group.packed) == expected


@pytest.mark.parametrize(
    "text",
    ["192.0.2.1", " 10.0.0.1 ", "0.0.0.0", "255.255.255.255", "240.0.0.1", "239.1.1.1",
     "224.0.0.1", "01.2.3.4", "1.2.3", "256.1.1.1", "1.2.3.4 5", "2001:db8::1", "ff3e::1",
     "10.0.0.0/8", "10.0.0.1/8", "0x1.2.3.4", "host", "::ffff:1.2.3.4", "1::2:0:0:3",
     "10.0.0.0/08", "2001:db8::/0032", "::", "::/0", "10.0.0.0/ 8"],
)  # fmt: skip
def test_source_reading_agrees_with_ipaddress(text):
    """One reader (inet_pton) where ipaddress was used: the same sources accepted, as
    the same networks (host bits masked, as strict=False does)."""
    try:
        expected = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        expected = None
    if expected is None or expected.network_address.is_multicast:
        with pytest.raises(InvalidArgument, match=f"source {text.strip()!r} is"):
            make_route_key(text, "233.252.0.1" if ":" not in text else "ff3e::1")
        return
    group = "233.252.0.1" if expected.version == 4 else "ff3e::1"
    shown = make_route_key(text, group).texts[0]
    unspecified = expected.num_addresses == 1 and not int(expected.network_address)
    if expected.prefixlen == 0 or unspecified:
        assert shown == "*"  # /0, or the unspecified address: any source
    else:
        assert ipaddress.ip_network(shown) == expected


# -- text of addresses -------------------------------------------------------------------
def test_address_text():
    assert format_address(bytes([192, 0, 2, 1])) == "192.0.2.1"
    assert format_address(ipaddress.ip_address("ff3e::db8:1").packed) == "ff3e::db8:1"
    assert format_prefix(bytes([10, 1, 0, 0]), 16) == "10.1.0.0/16"
    assert format_prefix(bytes([10, 1, 0, 0]), 32) == "10.1.0.0"
    assert source_text(" 10.1.0.0/16 ") == "10.1.0.0/16"
    assert source_text("2001:DB8::1") == "2001:db8::1"
    assert source_text("*") == source_text("") == source_text("0.0.0.0/0") == "*"
    assert source_text("0.0.0.0") == source_text("::") == "*"
    with pytest.raises(InvalidArgument, match="source '233.1.1.1' is a multicast address"):
        make_route_key("233.1.1.1", "233.252.0.1")


# -- VIF keys and interface names --------------------------------------------------------
def test_vif_keys():
    key = VifKey(V6, 3, "eth0")
    assert key == VifConfig("eth0", V6, 3, ttl_threshold=9).key
    assert hash(key) == hash(VifKey(V6, 3, "eth0")) and key != VifKey(V4, 3, "eth0")
    with pytest.raises(InvalidArgument, match="family 'ipv6' is not valid"):
        VifKey("ipv6", 0, "eth0")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="table -2 is not valid"):
        VifKey(V4, -2, "eth0")
    with pytest.raises(InvalidArgument, match="interface name 'a/b' is not valid"):
        VifKey(V4, 0, "a/b")


@pytest.mark.parametrize(
    "name, message",
    [
        ("eth0", None),
        ("x" * 15, None),
        ("br-lan.10", None),
        ("a\"b", None),  # the kernel allows it (the state file escapes it)
        ("", "interface name is empty"),
        (None, "interface name None is not valid: it must be a string"),
        (".", "interface name '.' is not valid"),
        ("..", "interface name '..' is not valid"),
        ("x" * 16, "is too long: at most 15 characters"),
        ("eth 0", "no spaces, '/' or ':' allowed"),
        ("eth/0", "no spaces, '/' or ':' allowed"),
        ("eth0:1", "no spaces, '/' or ':' allowed"),
        ("éth0", "use printable ASCII characters only"),
        ("eth\t0", "use printable ASCII characters only"),
    ],
)  # fmt: skip
def test_interface_names(name, message):
    if message is None:
        assert validate_interface_name(name) == name
    else:
        with pytest.raises(InvalidArgument, match=message):
            validate_interface_name(name)


@pytest.mark.parametrize(
    "source, group, texts",
    [
        ("", "225.1.2.3/24", ("*", "225.1.2.0/24")),
        ("10.1.2.3/8", "239.1.1.1/8", ("10.0.0.0/8", "239.0.0.0/8")),
        ("2001:db8::1/32", "ff3e::1:2/112", ("2001:db8::/32", "ff3e::1:0/112")),
        ("", "ff3e::db8:1/16", ("*", "ff3e::/16")),
        ("0.0.0.9/0", "232.1.1.1", ("*", "232.1.1.1")),  # masked to /0: any source
    ],
)
def test_host_bits_are_masked_as_smcroute_does(source, group, texts):
    key = make_route_key(source, group)
    assert key.texts == texts
    assert key == make_route_key(*(text if text != "*" else "" for text in texts))
    assert masked_prefix(group) == (texts[1] if group != texts[1] else None)


def test_masked_prefix_names_only_prefixes_with_host_bits():
    assert masked_prefix(" 225.1.2.3/24") == "225.1.2.0/24"
    assert masked_prefix("10.1.2.3/8") == "10.0.0.0/8"
    for text in ("225.1.2.0/24", "225.1.2.3", "225.1.2.3/33", "nonsense/8", "ff3e::1/x", ""):
        assert masked_prefix(text) is None, text


def test_a_masked_group_is_still_checked():
    with pytest.raises(InvalidArgument, match="group '224.0.0.0/4' is link-local"):
        make_route_key("", "224.0.0.5/4")


def test_host_route_is_the_route_the_checked_constructors_make():
    """The state file's fast path builds the same values, hash included, and leaves
    every source it does not check to make_route_key."""
    for table, source, group in [(0, "10.0.0.1", "233.252.0.1"), (7, "2001:db8::1", "ff3e::1")]:
        base = make_route_key("*", group, table)
        packed = make_route_key(source, group, table).source
        fast = host_route(base, packed, "up0", ("down0",))
        slow = Route(make_route_key(source, group, table), "up0", ("down0",))
        assert fast == slow and hash(fast.key) == hash(slow.key) and repr(fast) == repr(slow)
        assert {fast.key: 1}[slow.key] == 1
    base = make_route_key("*", "233.252.0.1")
    for source in (bytes(4), bytes([233, 1, 1, 1]), bytes(16), "10.0.0.1"):
        assert host_route(base, source, "up0", ()) is None  # type: ignore[arg-type]
    prefix = make_route_key("*", "233.252.0.0/24")
    assert host_route(prefix, bytes([10, 0, 0, 1]), "up0", ()) is None
