"""The installed .deb under a real systemd, on Debian 12 and Debian 13 (issue 12).

One booted container per suite serves the whole module, in this order: install and
activation, sandbox, forwarding ((S,G), (*,G) first packets, IPv6), polkit, reload,
restart, stop, reboot, journal. Each test sets up what it needs on that system (the
topology, its routes) so one failure does not hide the next test's result.
"""

from __future__ import annotations

import time
import uuid

import pytest

from .container import wait_for
from .flows import (
    SOURCE_V4,
    SOURCE_V6,
    Receiver,
    add_source_address,
    ensure_topology,
    send,
    send_argv,
)
from .pty import PtySession
from .system import EXIT_NOT_AUTHORIZED, UNIT, DebianSystem, security_exposure

pytestmark = pytest.mark.system

G_SG, G_STAR, G_V6, G_POLKIT = "233.252.0.1", "233.252.0.2", "ff3e::db8:1", "233.252.0.9"
SG_ROUTE = f"({SOURCE_V4},{G_SG})"
V6_ROUTE = f"({SOURCE_V6},{G_V6})"
G_CONFIG = "233.252.0.20"
CONFIG_ROUTE = f"({SOURCE_V4},{G_CONFIG})"
SECURITY_EXPOSURE_MAX = 2.5  # `systemd-analyze security` overall exposure; README states it
CAP_NET_ADMIN, CAP_NET_RAW = 12, 13


def _forwards(debian: DebianSystem, group: str, tag: str, count: int = 40,
              source: str = SOURCE_V4) -> set[int]:  # fmt: skip
    """Send `count` packets from `source` to `group`; the sequence numbers received in dst."""
    with Receiver(debian.c, group) as receiver:
        send(debian.c, group, tag, count, source=source)
        return receiver.wait_count(tag, count, timeout=10)


def test_package_installs_offline_and_enables_the_unit(debian: DebianSystem) -> None:
    debian.require_installed()
    assert debian.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
    exec_start = debian.unit("ExecStart")
    binary = exec_start.split("path=", 1)[1].split(" ", 1)[0] if "path=" in exec_start else ""
    assert binary and debian.run("test", "-x", binary).returncode == 0, exec_start
    assert debian.run("test", "-f", "/usr/share/polkit-1/actions/org.mfc.Forwarding1.policy"
                      ).returncode == 0  # fmt: skip


def test_first_busctl_call_activates_the_service_through_systemd(debian: DebianSystem) -> None:
    debian.require_installed()
    # The package may have started the unit; activation is what is proven here.
    debian.systemctl("stop", UNIT)
    assert debian.active_state() == "inactive"
    cursor = debian.journal_cursor()

    started = time.monotonic()
    listed = debian.busctl("ListRoutes", "a{sv}", "0")
    debian.record("activation by the first call, s", time.monotonic() - started)

    assert (
        listed.returncode == 0
    ), f"{listed.stderr}\n{debian.status()}\n{debian.journal()[-3000:]}"
    assert listed.stdout.strip() == "a(sssasa{sv}) 0"
    assert debian.active_state() == "active"
    main_pid = debian.main_pid()
    assert main_pid > 0 and debian.name_owner_pid() == main_pid  # systemd's, not the bus's
    # A clean start says nothing at warning or worse, and never a traceback.
    assert debian.warnings_since(cursor) == []
    assert "Traceback" not in debian.journal(after=cursor)


def test_the_units_sandbox_is_in_effect(debian: DebianSystem) -> None:
    debian.require_running()
    pid = debian.main_pid()
    # Read inside: the container's /proc is its own PID namespace's.
    proc_status = debian.run("cat", f"/proc/{pid}/status", check=True).stdout
    status = dict(line.split(":\t", 1) for line in proc_status.splitlines() if ":\t" in line)
    bounding = int(status["CapBnd"].strip(), 16)
    assert bounding == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW), hex(bounding)
    assert status["NoNewPrivs"].strip() == "1"
    # / as the service sees it: the last mount at / in its mount namespace, read-only.
    mountinfo = debian.run("cat", f"/proc/{pid}/mountinfo", check=True).stdout
    roots = [line.split() for line in mountinfo.splitlines() if line.split()[4] == "/"]
    assert roots and "ro" in roots[-1][5].split(","), roots
    debian.record("CapBnd", status["CapBnd"].strip())


def test_systemd_analyze_security_exposure(debian: DebianSystem) -> None:
    debian.require_installed()
    done = debian.run("systemd-analyze", "security", "--no-pager", UNIT)
    exposure = security_exposure(done.stdout)
    debian.record("systemd-analyze security exposure", exposure)
    assert exposure <= SECURITY_EXPOSURE_MAX, done.stdout[-3000:]


def test_sg_route_forwards_real_packets(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    added = debian.route_add(G_SG, "from", SOURCE_V4, "iif", "up0", "oif", "down0")
    assert added.returncode == 0, added.stderr
    shown = debian.wait_mroute(SG_ROUTE)
    assert "Iif: up0" in shown and "down0" in shown, shown

    received = _forwards(debian, G_SG, "sg", 40)
    assert received == set(range(40)), f"lost {sorted(set(range(40)) - received)}"
    # The witness: a group with no route delivers nothing through the same legs.
    assert _forwards(debian, "233.252.0.77", "none", 10) == set()


def test_star_g_route_delivers_the_first_packet_of_new_sources(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    added = debian.route_add(G_STAR, "iif", "up0", "oif", "down0")
    assert added.returncode == 0, added.stderr
    sources = [f"192.0.2.{n}" for n in range(11, 16)]
    for source in sources:
        add_source_address(debian.c, source)
    with Receiver(debian.c, G_STAR) as receiver:
        for source in sources:  # each one new to the kernel: its first packet is an upcall
            send(debian.c, G_STAR, "star", 5, source=source, interval=0.01)
        for source in sources:
            receiver.wait_count("star", 5, timeout=10, source=source)
        got = {source: receiver.seqs("star", source) for source in sources}
    first = sum(0 in seqs for seqs in got.values())
    debian.record("(*,G) first packets delivered", f"{first}/{len(sources)}")
    assert got == {source: set(range(5)) for source in sources}
    learned = debian.mroute()
    assert all(f"({source},{G_STAR})" in learned for source in sources), learned


def test_ipv6_route_forwards_real_packets(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    added = debian.route_add(G_V6, "from", SOURCE_V6, "iif", "up0", "oif", "down0")
    assert added.returncode == 0, added.stderr
    debian.wait_mroute(V6_ROUTE, "ipv6")
    received = _forwards(debian, G_V6, "v6", 40, source=SOURCE_V6)
    assert received == set(range(40)), f"lost {sorted(set(range(40)) - received)}"


def test_example_rule_group_member_allowed_outsider_refused(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    suffix = uuid.uuid4().hex[:6]
    group, member, outsider = f"mfcnet{suffix}", f"mfcmem{suffix}", f"mfcout{suffix}"
    debian.add_group(group)
    debian.add_user(member, groups=(group,))
    debian.add_user(outsider)
    words = (G_POLKIT, "from", SOURCE_V4, "iif", "up0", "oif", "down0")

    # Before the rule the member is an outsider too: the rule is what allows.
    before = debian.route_add(*words, user=member)
    assert before.returncode == EXIT_NOT_AUTHORIZED, before.stderr

    rules = debian.run("sh", "-c", "dpkg -L mfc-dbus | grep '^/usr/share/doc/.*\\.rules$'")
    assert rules.returncode == 0, "the package ships no example rule under /usr/share/doc"
    example = rules.stdout.split()[0]
    text = debian.c.path(example).read_text()
    assert '"netdev"' in text, text
    debian.c.write(
        "/etc/polkit-1/rules.d/50-mfc-systest.rules", text.replace('"netdev"', f'"{group}"')
    )

    # polkitd re-reads rules.d on change; poll until the member is allowed.
    wait_for(lambda: debian.route_add(*words, user=member).returncode == 0, 20,
             f"polkitd to allow group {group} by the example rule")  # fmt: skip
    assert f"({SOURCE_V4},{G_POLKIT})" in debian.mroute()

    refused = debian.route_add("233.252.0.10", "iif", "up0", "oif", "down0", user=outsider)
    assert refused.returncode == EXIT_NOT_AUTHORIZED, (refused.returncode, refused.stderr)
    assert "org.mfc.Forwarding1.manage-routes" in refused.stderr, refused.stderr
    assert "(*,233.252.0.10)" not in debian.mroute() and "233.252.0.10" not in debian.mroute()
    removed = debian.mfc("route", "del", G_POLKIT, "from", SOURCE_V4)
    assert removed.returncode == 0, removed.stderr


def test_client_agent_prompts_on_a_pty_outside_a_logind_session(debian: DebianSystem) -> None:
    """`mfc-dbus` as an admin (group sudo: polkit's admin group on Debian) on a real pty,
    under runuser: no logind session, so only an agent registered for the client's own
    process can prompt. Wrong password: refused, exit 4; right one: authorized."""
    debian.require_running()
    ensure_topology(debian.c)
    suffix = uuid.uuid4().hex[:6]
    admin, password = f"mfcadm{suffix}", f"pw-{uuid.uuid4().hex}"
    debian.add_user(admin, groups=("sudo",), password=password)
    assert debian.run("loginctl", "list-sessions", "--no-legend").stdout.strip() == ""
    group = "233.252.0.11"
    argv = debian.c.argv(["mfc-dbus", "route", "add", group, "from", SOURCE_V4,
                          "iif", "up0", "oif", "down0"], user=admin)  # fmt: skip

    def attempt(answer: str) -> tuple[bool, int, str]:
        with PtySession(argv) as session:
            prompted = session.expect_password_prompt(timeout=20)
            if prompted:
                session.send(answer + "\n")
            status = session.wait(timeout=40)
            return prompted, status, session.text

    prompted, status, text = attempt("not-" + password)
    assert prompted, f"no password prompt on the terminal:\n{text}"
    assert status == EXIT_NOT_AUTHORIZED, (status, text)
    assert group not in debian.mroute()

    prompted, status, text = attempt(password)
    assert prompted, f"no password prompt on the terminal:\n{text}"
    assert status == 0, (status, text)
    assert f"({SOURCE_V4},{group})" in debian.mroute()
    assert debian.mfc("route", "del", group, "from", SOURCE_V4).returncode == 0


def test_reload_keeps_flows_running(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    assert debian.route_add(G_SG, "from", SOURCE_V4, "iif", "up0", "oif", "down0").returncode == 0
    debian.wait_mroute(SG_ROUTE)
    pid = debian.main_pid()
    count, interval = 600, 0.005  # 200 packets/s for 3 s
    with Receiver(debian.c, G_SG) as receiver:
        sender = debian.c.popen(send_argv(G_SG, "reload", count, source=SOURCE_V4,
                                          interval=interval), netns="src")  # fmt: skip
        try:
            assert len(receiver.wait_count("reload", 100, timeout=10)) >= 100
            debian.systemctl("reload", UNIT)
            assert sender.wait(timeout=30) == 0
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        received = receiver.wait_count("reload", count, timeout=5)
        gap = receiver.longest_gap("reload")
    debian.record("reload: packets lost", count - len(received))
    debian.record("reload: longest gap, ms", gap * 1000)
    assert debian.main_pid() == pid  # a reload, not a restart
    assert received == set(range(count)), f"lost {count - len(received)} during reload"


def test_configuration_drop_ins_apply_on_reload(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    assert debian.run("test", "-f", "/etc/mfc-dbus/mfc-dbus.conf").returncode == 0
    drop_in = "/etc/mfc-dbus/conf.d/50-test.conf"
    line = f"mroute from up0 source {SOURCE_V4} group {G_CONFIG} to down0\n"
    debian.run("sh", "-c", f"printf '{line}' > {drop_in}", check=True)
    assert debian.run("mfc-dbusd", "--check").returncode == 0
    debian.systemctl("reload", UNIT)
    debian.wait_mroute(CONFIG_ROUTE)
    assert _forwards(debian, G_CONFIG, "config", 20) == set(range(20))
    shown = debian.run("mfc-dbus", "route", "show", check=True).stdout
    assert f"config {drop_in}:1" in shown, shown

    debian.run("sh", "-c", f"printf 'mroute from up0 group 10.0.0.1 to down0\\n' > {drop_in}")
    checked = debian.run("mfc-dbusd", "--check")
    assert checked.returncode == 78 and f"{drop_in}:1:23:" in checked.stderr
    refused = debian.run("mfc-dbus", "reload")
    assert refused.returncode != 0 and f"{drop_in}:1:23:" in refused.stderr
    assert CONFIG_ROUTE in debian.mroute("ipv4").replace(" ", "")  # nothing changed

    debian.run("rm", drop_in, check=True)
    debian.systemctl("reload", UNIT)
    wait_for(
        lambda: CONFIG_ROUTE not in debian.mroute("ipv4").replace(" ", ""),
        15,
        "the removed drop-in's route to leave the kernel",
    )


def test_restart_restores_persistent_routes(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    for words in ((G_SG, "from", SOURCE_V4), (G_V6, "from", SOURCE_V6)):
        assert debian.route_add(*words, "iif", "up0", "oif", "down0").returncode == 0
    debian.wait_mroute(SG_ROUTE)
    pid = debian.main_pid()
    cursor = debian.journal_cursor()

    started = time.monotonic()
    debian.systemctl("restart", UNIT)

    assert debian.main_pid() not in (0, pid)
    debian.wait_mroute(SG_ROUTE)
    debian.wait_mroute(V6_ROUTE, "ipv6")
    debian.record("restart: routes back in the kernel, s", time.monotonic() - started)
    assert _forwards(debian, G_SG, "restart", 20) == set(range(20))
    assert debian.warnings_since(cursor) == []


def test_stop_leaves_no_route(debian: DebianSystem) -> None:
    debian.require_running()
    ensure_topology(debian.c)
    assert debian.route_add(G_SG, "from", SOURCE_V4, "iif", "up0", "oif", "down0").returncode == 0
    debian.wait_mroute(SG_ROUTE)

    debian.systemctl("stop", UNIT)

    assert debian.active_state() == "inactive"
    assert debian.mroute("ipv4").strip() == ""
    assert debian.mroute("ipv6").strip() == ""


def test_reboot_brings_persistent_routes_back_without_a_call(debian: DebianSystem) -> None:
    debian.require_installed()
    assert debian.run("test", "-e", "/var/lib/mfc-dbus").returncode == 0

    status = debian.c.reboot()

    debian.record("reboot: nspawn exit status", status)
    # Started at boot (the unit is enabled), before anyone called it.
    assert debian.active_state() == "active", debian.status()
    assert debian.warnings_since(None, "-b") == []
    # The interfaces appear after the service: the persistent routes follow them.
    ensure_topology(debian.c)
    debian.wait_mroute(SG_ROUTE)
    debian.wait_mroute(V6_ROUTE, "ipv6")
    assert _forwards(debian, G_SG, "reboot", 20) == set(range(20))


def test_no_traceback_in_the_journal(debian: DebianSystem) -> None:
    debian.require_installed()
    journal = debian.journal()
    assert journal.strip(), "the unit never logged anything"
    assert "Traceback" not in journal, journal[-3000:]
