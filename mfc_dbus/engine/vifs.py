"""VIF/MIF allocation by interface name for one (family, table): the desired side.

A name holds a VIF slot while a configured route uses it or an explicit VIF names it,
whether or not the interface exists right now (so the 32-slot limit is decided when
the route is configured, never half-way through installing it, and a returning
interface gets its old slot back).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import LimitExceeded
from ..model import MAX_VIFS, VifConfig
from .undo import NO_UNDO, UndoLog, put_or_pop


class VifAllocator:
    def __init__(self, describe: str) -> None:
        self.describe = describe  # e.g. "ipv4 table 0", for messages
        self.slots: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self.users: dict[str, int] = {}  # name -> how many configured routes use it
        self.explicit: dict[str, VifConfig] = {}

    # -- users (undoable) --------------------------------------------------------
    # A count per name, not the set of keys: batches touch it for every route, and the
    # routes using a name are only needed on the rare hotplug (the engine scans then).
    def add_users(self, name: str, change: int, undo: UndoLog) -> None:
        count = self.users.get(name, 0) + change
        if count < 0:
            raise AssertionError(f"{self.describe}: {name} would have {count} users")
        if count:
            self.users[name] = count
        else:
            self.users.pop(name, None)
        undo.push(self.add_users, name, -change, NO_UNDO)

    def set_explicit(self, name: str, config: VifConfig | None, undo: UndoLog) -> None:
        undo.push(put_or_pop, self.explicit, name, self.explicit.get(name))
        put_or_pop(self.explicit, name, config)

    # -- queries --------------------------------------------------------------------
    def needed(self, name: str) -> bool:
        return name in self.users or name in self.explicit

    def threshold(self, name: str) -> int:
        config = self.explicit.get(name)
        return config.ttl_threshold if config is not None else 1

    def mrdisc(self, name: str) -> bool:
        config = self.explicit.get(name)
        return config is not None and config.mrdisc

    def check_limit(self, names: Iterable[str]) -> None:
        """Raise LimitExceeded when the names needing a slot do not fit in MAX_VIFS."""
        slots = self.slots
        if all(name in slots for name in names):  # the common case: no new interface
            return
        count = sum(1 for name in self.slots if self.needed(name))
        new = sorted(name for name in names if name not in self.slots and self.needed(name))
        if count + len(new) > MAX_VIFS:
            shown = ", ".join(new[:MAX_VIFS])  # bounded: a caller may send 100,000 names
            more = f" and {len(new) - MAX_VIFS} more" if len(new) > MAX_VIFS else ""
            raise LimitExceeded(
                f"{self.describe} would need {count + len(new)} interfaces "
                f"(new: {shown}{more}); the kernel allows {MAX_VIFS} per family and "
                "table: remove routes or VIFs of unused interfaces, or use another table"
            )

    # -- slots (undoable) ----------------------------------------------------------
    def allocate(self, name: str, avoid: set[int], undo: UndoLog) -> int | None:
        """Give `name` the lowest free slot not in `avoid`; None when there is none."""
        for slot in range(MAX_VIFS):
            if slot not in self.names and slot not in avoid:
                self.slots[name] = slot
                self.names[slot] = name
                undo.push(self._release, name)
                return slot
        return None

    def bind(self, name: str, slot: int) -> None:
        """Give `name` the slot the kernel already has for it (adopting a table)."""
        self._bind(name, slot)

    def release(self, name: str, undo: UndoLog) -> None:
        slot = self.slots[name]
        self._release(name)
        undo.push(self._bind, name, slot)

    def _bind(self, name: str, slot: int) -> None:
        self.slots[name] = slot
        self.names[slot] = name

    def _release(self, name: str) -> None:
        slot = self.slots.pop(name)
        del self.names[slot]
