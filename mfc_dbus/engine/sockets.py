"""The kernel sockets of the engine's tables: adopted when systemd passed one back
from its file descriptor store, else opened, and each one handed to a keeper (the
service stores it in systemd's fd store, so the kernel's table outlives a restart).
The group-join sockets passed back are kept for the membership layer (their FDNAMEs
start with join-: kernel/membership.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..kernel import MrouteSocket, adopt_mroute_socket, open_mroute_socket
from ..kernel.membership import parse_join_fd_name
from ..model import Family

log = logging.getLogger(__name__)

TableId = tuple[Family, int]


def fd_name(family: Family, table: int) -> str:
    return f"mroute-{family.value}-{table}"


def parse_fd_name(name: str) -> TableId | None:
    prefix, _, rest = name.partition("-")
    family_text, _, table_text = rest.partition("-")
    if prefix != "mroute" or not table_text.isdigit():
        return None
    try:
        return Family.parse(family_text), int(table_text)
    except ValueError:
        return None


def _keep_nothing(fd: int, name: str) -> bool:
    return False


def _forget_nothing(name: str) -> None:
    pass


class KernelSockets:
    """Adopts the socket passed back for a table, else opens a new one; `keep(fd, name)`
    is told of every socket handed out and says whether it is kept (stored) outside
    this process; `forget(name)` of a kept socket closed for good."""

    def __init__(
        self,
        passed: dict[str, int] | None = None,
        keep: Callable[[int, str], bool] = _keep_nothing,
        forget: Callable[[str], None] = _forget_nothing,
    ) -> None:
        self._passed: dict[TableId, int] = {}
        self.join_fds: dict[str, int] = {}  # group-join sockets passed back, by FDNAME
        for name, fd in (passed or {}).items():
            table = parse_fd_name(name)
            if table is None and parse_join_fd_name(name) is not None:
                self.join_fds[name] = fd
            elif table is None:
                log.warning("closing a file descriptor systemd passed as %r", name)
                os.close(fd)
            else:
                self._passed[table] = fd
        self._keep = keep
        self.forget = forget
        self.stored = False  # at least one socket is in systemd's store

    @property
    def adopted_tables(self) -> list[TableId]:
        """The tables whose sockets systemd passed back (before they are opened)."""
        return sorted(self._passed, key=lambda t: (t[0].value, t[1]))

    def open(self, family: Family, table: int) -> MrouteSocket:
        fd = self._passed.pop((family, table), None)
        if fd is not None:
            sock = adopt_mroute_socket(family, table, fd)
            log.info("%s table %d: adopted the kernel's table from systemd", family, table)
        else:
            sock = open_mroute_socket(family, table)
        if self._keep(sock.fileno(), fd_name(family, table)):
            self.stored = True
        return sock

    def keep(self, fd: int, name: str) -> bool:
        """Hand another socket (a join socket) to the keeper; True if it is kept."""
        return self._keep(fd, name)
