"""Pause the cyclic garbage collector around work that allocates many objects.

A batch of 10,000 routes allocates hundreds of thousands of small objects and no
reference cycles; each generation-0 collection it triggers would rescan every route
the service holds. Reference counting still frees everything at once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

MANY = 64  # items in one piece of work: below this a pause saves less than it costs


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def gc_paused_if_many(count: int) -> AbstractContextManager[None]:
    """gc_paused() for work on more than MANY items, else nothing."""
    return gc_paused() if count > MANY else nullcontext()
