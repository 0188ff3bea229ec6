"""The kernel sockets of the engine's tables: adopted when systemd passed one back
from its file descriptor store, else opened, and each one handed to a keeper (the
service stores it in systemd's fd store, so the kernel's table outlives a restart)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..kernel import MrouteSocket, adopt_mroute_socket, open_mroute_socket
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


class KernelSockets:
    """Adopts the socket passed back for a table, else opens a new one; `keep(fd, name)`
    is told of every socket handed out and says whether it is kept (stored) outside
    this process."""

    def __init__(
        self,
        passed: dict[str, int] | None = None,
        keep: Callable[[int, str], bool] = _keep_nothing,
    ) -> None:
        self._passed: dict[TableId, int] = {}
        for name, fd in (passed or {}).items():
            table = parse_fd_name(name)
            if table is None:
                log.warning("closing a file descriptor systemd passed as %r", name)
                os.close(fd)
            else:
                self._passed[table] = fd
        self._keep = keep
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
