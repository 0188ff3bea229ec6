"""What diagnose reads from the host it runs on, besides the service's counters.

Interface flags (`ip -j link show`), group memberships (`ip -j maddr show`), multicast
routing rules (`ip -N -j mrule show`,
IPv4 and IPv6), and the firewall rules forwarded packets pass (`nft -j list ruleset`;
`iptables-save -c` and its relatives for rules of the legacy back end). A tool that
is missing or refuses (nft needs CAP_NET_ADMIN) leaves its part empty and says why
in `unread`; it never fails the diagnosis. These are the network namespace's own:
diagnose sees the service's only when it runs where the service runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import iptables, nft
from .firewall import FirewallRule
from .joins import parse_memberships
from .links import parse_links
from .mrules import MRule, parse_mrules

T = TypeVar("T")
TIMEOUT = 10.0
IPTABLES_SAVES = {
    "iptables-save": "ipv4",
    "ip6tables-save": "ipv6",
    "iptables-legacy-save": "ipv4",
    "ip6tables-legacy-save": "ipv6",
}


class Unreadable(Exception):
    """A tool is missing or failed; the message says which and why."""


def run(*argv: str) -> str:
    """A read-only command's standard output; Unreadable when it cannot be had."""
    if shutil.which(argv[0]) is None:
        raise Unreadable(f"{argv[0]} is not installed")
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unreadable(f"{' '.join(argv)}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise Unreadable(f"{' '.join(argv)}: {why}")
    return done.stdout


def read_json(*argv: str) -> Any:
    text = run(*argv)
    try:
        return json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise Unreadable(f"{' '.join(argv)}: unreadable JSON ({exc})") from None


@dataclass(frozen=True)
class HostState:
    """One reading of the host; an empty one (the default) checks nothing."""

    links: dict[str, frozenset[str]] | None = None  # name -> flags; None: not read
    mrules: dict[str, list[MRule]] = field(default_factory=dict)  # family -> rules
    firewall: list[FirewallRule] = field(default_factory=list)
    firewall_read: bool = False
    joined: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> groups
    unread: tuple[str, ...] = ()

    @classmethod
    def read(cls) -> HostState:
        unread: list[str] = []
        mrules = {}
        for family in ("ipv4", "ipv6"):
            rules = _guarded(unread, _read_mrules, family)
            if rules is not None:
                mrules[family] = rules
        firewall = _guarded(unread, _read_nft)
        return cls(
            links=_guarded(unread, _read_links),
            mrules=mrules,
            firewall=(firewall or []) + _read_iptables(unread),
            firewall_read=firewall is not None,
            joined=_guarded(unread, _read_memberships) or {},
            unread=tuple(unread),
        )


def _read_links() -> dict[str, frozenset[str]]:
    return parse_links(read_json("ip", "-j", "link", "show"))


def _read_memberships() -> dict[str, frozenset[str]]:
    return parse_memberships(read_json("ip", "-j", "maddr", "show"))


def _read_mrules(family: str) -> list[MRule]:
    flag = "-4" if family == "ipv4" else "-6"
    return parse_mrules(read_json("ip", "-N", "-j", flag, "mrule", "show"))


def _read_nft() -> list[FirewallRule]:
    return nft.forward_rules(read_json("nft", "-j", "list", "ruleset"))


def _guarded(unread: list[str], read: Callable[..., T], *args: str) -> T | None:
    try:
        return read(*args)
    except Unreadable as exc:
        unread.append(str(exc))
        return None


def _read_iptables(unread: list[str]) -> list[FirewallRule]:
    """Rules of the legacy back end: each family's rule set once, however reached."""
    found: list[FirewallRule] = []
    seen: set[tuple[str, str]] = set()
    for command, family in IPTABLES_SAVES.items():
        if shutil.which(command) is None:
            continue
        text = _guarded(unread, run, command, "-c")
        if not text or iptables.is_nft_backend(text):
            continue  # nftables' own reading has these rules
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        if (family, body) in seen:
            continue
        seen.add((family, body))
        found += iptables.forward_rules(text, iptables.Source(command, family))
    return found
