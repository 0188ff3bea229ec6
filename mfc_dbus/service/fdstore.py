"""systemd's file descriptor store for the multicast-routing and group-join sockets.

The kernel keeps a multicast table (VIFs and MFC entries) as long as the socket that
initialised it is open. Each socket the engine opens is handed to systemd
(`FDSTORE=1`, `FDNAME=mroute-<family>-<table>`); on the next start systemd passes the
stored sockets back (`LISTEN_FDS`, `LISTEN_FDNAMES`) and the engine adopts them
(mfc_dbus/engine/sockets.py), so a restart, a crash or an upgrade never closes the
last copy and nothing stops forwarding. The group-join sockets are stored the same
way (`FDNAME=join-<family>-<n>`), so no group is left and joined again
(kernel/membership.py); one closed for good is removed (`FDSTOREREMOVE=1`).
`systemctl stop` drops the store: the kernel then flushes the tables and leaves the
groups. Without systemd (no NOTIFY_SOCKET) nothing is stored and a restart flushes.
"""

from __future__ import annotations

import os

from .notify import notify

LISTEN_FDS_START = 3


def passed_fds() -> dict[str, int]:
    """The descriptors systemd passed to this process, by name; the variables are
    removed so that no child process takes them for its own."""
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    names = os.environ.pop("LISTEN_FDNAMES", "").split(":")
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return {}
    found = {}
    for offset in range(int(count)):
        fd = LISTEN_FDS_START + offset
        os.set_inheritable(fd, False)
        name = names[offset] if offset < len(names) else ""
        found[name] = fd
    return found


def store(fd: int, name: str) -> bool:
    """Hand `fd` to systemd's fd store under `name`; False without systemd."""
    return notify("FDSTORE=1", f"FDNAME={name}", fds=[fd])


def remove(name: str) -> None:
    """Close systemd's copy stored under `name` (a join socket closed for good: the
    copy would keep its memberships)."""
    notify("FDSTOREREMOVE=1", f"FDNAME={name}")
