"""(*,G) and prefix routes: which template, if any, an exact (S,G) belongs to.

Templates are kept per (family, table). Most templates have an exact group, so they
are indexed by group address; the few with a group prefix are scanned. Addresses are
packed bytes (RouteKey, upcalls). One (source, group) may have a template per input
(the input is part of RouteKey's identity); a flow takes the one it arrives on.
"""

from __future__ import annotations

from ..model import Route, RouteKey


def _specificity(route: Route) -> tuple[int, int]:
    return (route.key.group_len, route.key.source_len)


class TemplateIndex:
    def __init__(self) -> None:
        self._by_group: dict[bytes, list[Route]] = {}
        self._prefixes: list[Route] = []

    def __bool__(self) -> bool:
        return bool(self._by_group or self._prefixes)

    def _bucket(self, key: RouteKey) -> list[Route]:
        if key.group_len == 8 * len(key.group):
            return self._by_group.setdefault(key.group, [])
        return self._prefixes

    def put(self, route: Route) -> None:
        """Add or replace the template with route.key."""
        bucket = self._bucket(route.key)
        for i, other in enumerate(bucket):
            if other.key == route.key:
                bucket[i] = route
                return
        bucket.append(route)
        bucket.sort(key=_specificity, reverse=True)

    def remove(self, key: RouteKey) -> None:
        bucket = self._bucket(key)
        for i, other in enumerate(bucket):
            if other.key == key:
                del bucket[i]
                break
        if not bucket and bucket is not self._prefixes:
            del self._by_group[key.group]

    def from_any_input(self, key: RouteKey) -> list[Route]:
        """The templates of `key`'s addresses, whatever their input (key.input is
        ignored)."""
        bucket = (
            self._by_group.get(key.group, ())
            if key.group_len == 8 * len(key.group)
            else self._prefixes
        )
        return [
            route
            for route in bucket
            if route.key.sg == key.sg
            and route.key.source_len == key.source_len
            and route.key.group_len == key.group_len
        ]

    def matches(self, source: bytes, group: bytes) -> list[Route]:
        """Every template covering (source, group), most specific first."""
        found = [
            route for route in self._by_group.get(group, ()) if route.key.covers(source, group)
        ]
        found.extend(route for route in self._prefixes if route.key.covers(source, group))
        if len(found) > 1:
            found.sort(key=_specificity, reverse=True)
        return found

    def best(self, source: bytes, group: bytes, arrival: str | None) -> Route | None:
        """The template for a flow that arrived on `arrival`: the most specific template
        whose input is that interface, else the most specific template."""
        found = self.matches(source, group)
        for route in found:
            if route.input == arrival:
                return route
        return found[0] if found else None

    def accepting(self, source: bytes, group: bytes, arrival: str) -> Route | None:
        """The most specific template covering the flow whose input is `arrival`."""
        for route in self.matches(source, group):
            if route.input == arrival:
                return route
        return None
