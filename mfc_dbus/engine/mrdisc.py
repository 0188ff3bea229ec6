"""Multicast Router Discovery (RFC 4286) on the VIFs that ask for it (AddVif's
`mrdisc`, a configuration file's `phyint IF mrdisc`).

An interface advertises while it is an installed VIF with mrdisc on: the manager is an
engine listener and follows VifAdded/VifRemoved, so it starts when the interface
appears (again), stops without a word when it disappears, and sends a Termination
when mrdisc is switched off, the VIF is removed, or the service stops on purpose.

Timing (RFC 4286 section 3): MAX_INITIAL_ADVERTISEMENTS at once and every
MAX_INITIAL_ADVERT_INTERVAL, then one every MAX_ADVERT_INTERVAL plus or minus
ADVERT_JITTER. A Solicitation is answered by an Advertisement at once, but no sooner
than MIN_SOLICITED_GAP after the previous one (later Solicitations in that time share
one answer). The clock and the randomness are injected: the tests drive `tick`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..kernel.mrdisc import Advertisement, MrdiscSocket
from ..model import Family, Route, VifStatus

log = logging.getLogger(__name__)

MAX_ADVERT_INTERVAL = 20.0
ADVERT_JITTER = 0.025 * MAX_ADVERT_INTERVAL
MAX_INITIAL_ADVERT_INTERVAL = 2.0
MAX_INITIAL_ADVERTISEMENTS = 3
MIN_SOLICITED_GAP = 1.0
# The querier's variables are 0: this service runs no IGMP/MLD querier (RFC 4286 3.2).
ADVERTISEMENT = Advertisement(int(MAX_ADVERT_INTERVAL))
_LINK_NOT_READY = {errno.ENETDOWN, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ENXIO}


class DiscoverySocket(Protocol):
    """What an interface's advertiser needs of the kernel (MrdiscSocket)."""

    def fileno(self) -> int: ...

    def advertise(self, advertisement: Advertisement) -> None: ...

    def terminate(self) -> None: ...

    def read_solicitations(self) -> int: ...

    def is_current(self) -> bool: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Schedule:
    """When one interface advertises next. `jitter(low, high)` picks the offset."""

    due: float  # the next unsolicited advertisement
    jitter: Callable[[float, float], float]
    sent: int = 0
    last: float | None = None
    answer: float | None = None  # a Solicitation's answer, once the rate limit allows

    def next_due(self) -> float:
        return self.due if self.answer is None else min(self.due, self.answer)

    def solicited(self, now: float) -> None:
        earliest = now if self.last is None else max(now, self.last + MIN_SOLICITED_GAP)
        self.answer = earliest if self.answer is None else min(self.answer, earliest)

    def advertised(self, now: float) -> None:
        """An Advertisement went out at `now`: it also answers pending Solicitations."""
        self.last = now
        self.answer = None
        if now >= self.due:
            self.sent += 1
            if self.sent < MAX_INITIAL_ADVERTISEMENTS:
                self.due = now + MAX_INITIAL_ADVERT_INTERVAL
            else:
                self.due = now + MAX_ADVERT_INTERVAL + self.jitter(-ADVERT_JITTER, ADVERT_JITTER)


@dataclass(slots=True, eq=False)
class Advertiser:
    """One interface's socket, schedule, and the tables whose VIF asks for it."""

    sock: DiscoverySocket
    schedule: Schedule
    tables: set[int] = field(default_factory=set)


Opener = Callable[[Family, str], DiscoverySocket]


class Mrdisc:
    """The advertisers of all interfaces (implements EngineListener)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        opener: Opener = MrdiscSocket,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._clock = clock
        self.opener = opener
        self._jitter = jitter
        self.advertisers: dict[tuple[Family, str], Advertiser] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    # -- life cycle ------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for key, advertiser in self.advertisers.items():
            loop.add_reader(advertiser.sock.fileno(), self._on_solicitations, key)
        self.tick()

    def stop(self, terminate: bool) -> None:
        """Close every socket; with terminate, tell the snoopers first (a stop on
        purpose). Without, the router stays theirs until their timers run out."""
        for key in list(self.advertisers):
            self._close(key, terminate)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        self._stopped = True  # a late event must not open a socket nobody closes

    # -- following the VIFs ------------------------------------------------------------
    def vif_added(self, vif: VifStatus) -> None:
        key = (vif.family, vif.interface)
        if not vif.mrdisc:
            self._release(key, vif.table, terminate=True)
        elif vif.index is None:  # the interface is gone: nothing to say it on
            self._release(key, vif.table, terminate=False)
        else:
            self._hold(key, vif.table)

    def vif_removed(self, vif: VifStatus) -> None:
        self._release((vif.family, vif.interface), vif.table, terminate=True)

    def route_added(self, route: Route) -> None:
        pass

    def route_removed(self, route: Route) -> None:
        pass

    def group_joined(self, join: object) -> None:
        pass

    def group_left(self, join: object) -> None:
        pass

    def _hold(self, key: tuple[Family, str], table: int) -> None:
        if self._stopped:
            return
        advertiser = self.advertisers.get(key)
        if advertiser is not None and not advertiser.sock.is_current():
            self._close(key, terminate=False)  # the interface was replaced
            advertiser = None
        if advertiser is None:
            try:
                sock = self.opener(*key)
            except OSError as exc:  # NoSuchInterface included: it is retried on its return
                log.warning("%s %s: cannot start router discovery: %s", key[0], key[1], exc)
                return
            advertiser = Advertiser(sock, Schedule(self._clock(), self._jitter))
            self.advertisers[key] = advertiser
            if self._loop is not None:
                self._loop.add_reader(sock.fileno(), self._on_solicitations, key)
            log.info("%s %s: multicast router discovery on", key[0], key[1])
        advertiser.tables.add(table)
        self.tick()

    def _release(self, key: tuple[Family, str], table: int, terminate: bool) -> None:
        advertiser = self.advertisers.get(key)
        if advertiser is None:
            return
        advertiser.tables.discard(table)
        if not advertiser.tables or not terminate:
            self._close(key, terminate)

    def _close(self, key: tuple[Family, str], terminate: bool) -> None:
        advertiser = self.advertisers.pop(key)
        if self._loop is not None:
            self._loop.remove_reader(advertiser.sock.fileno())
        if terminate:
            self._send(key, advertiser.sock.terminate)
        advertiser.sock.close()
        log.info("%s %s: multicast router discovery off", key[0], key[1])

    # -- timers and solicitations ---------------------------------------------------------
    def tick(self) -> None:
        """Send what is due, then wait for the next one."""
        now = self._clock()
        for key, advertiser in self.advertisers.items():
            schedule = advertiser.schedule
            if schedule.next_due() <= now:
                self._send(key, advertiser.sock.advertise, ADVERTISEMENT)
                schedule.advertised(now)  # a failed send is retried at the next due time
        self._arm()

    def _arm(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.advertisers:
            due = min(a.schedule.next_due() for a in self.advertisers.values())
            self._timer = self._loop.call_later(max(0.0, due - self._clock()), self.tick)

    def _on_solicitations(self, key: tuple[Family, str]) -> None:
        advertiser = self.advertisers.get(key)
        if advertiser is None:
            return
        try:
            count = advertiser.sock.read_solicitations()
        except OSError as exc:
            log.warning("%s %s: cannot read solicitations: %s", key[0], key[1], exc)
            return
        if count:
            self.solicited(*key)

    def solicited(self, family: Family, interface: str) -> None:
        """A Solicitation arrived (what the socket's reader calls; tests call it too)."""
        advertiser = self.advertisers.get((family, interface))
        if advertiser is not None:
            advertiser.schedule.solicited(self._clock())
            self.tick()

    @staticmethod
    def _send(key: tuple[Family, str], send: Callable[..., None], *args: object) -> None:
        try:
            send(*args)
        except OSError as exc:  # the next one may go
            # A link that is down (or has no address yet) is no fault: debug, not warning.
            level = logging.DEBUG if exc.errno in _LINK_NOT_READY else logging.WARNING
            log.log(level, "%s %s: router discovery message not sent: %s", *key, exc)
