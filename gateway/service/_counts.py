"""Per-client counts the gateway limits (calls in flight, open streams): in this process, or
shared by the stack's gateway processes (gateway/common/slottable.py), so that a limit holds
for the stack. `Counts.take` returns a ticket that `Counts.give` takes back, or raises
`AtLimit` with what the client holds.

    counts = LocalCounts()                       # a gateway run alone: today's counts
    counts = SharedCounts(table, "calls")        # one of `saxgw up --workers N`'s gateways
    ticket = counts.take("team-a", limit=4)
    counts.give("team-a", ticket)
"""

from __future__ import annotations

from typing import Protocol

from gateway.common.slottable import UNSHARED, AtLimit, SlotTable

__all__ = ["AtLimit", "Counts", "LocalCounts", "SharedCounts"]


class Counts(Protocol):
    def take(self, key: str, limit: int) -> int: ...
    def give(self, key: str, ticket: int) -> None: ...
    def held(self, key: str) -> int: ...


class LocalCounts:
    """Counts of this process alone."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def take(self, key: str, limit: int) -> int:
        held = self._held.get(key, 0)
        if held >= limit:
            raise AtLimit(held)
        self._held[key] = held + 1
        return UNSHARED

    def give(self, key: str, ticket: int) -> None:
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]

    def held(self, key: str) -> int:
        return self._held.get(key, 0)


class SharedCounts:
    """Counts in the stack's table, under ``kind`` (calls and streams are apart). A key the
    table cannot count (`UNSHARED`: no free row, or a stuck lock) is counted in this process,
    as a gateway run alone counts: the limit then holds per process for that call."""

    def __init__(self, table: SlotTable, kind: str) -> None:
        self._table, self._prefix = table, f"{kind}:"
        self._local = LocalCounts()

    def take(self, key: str, limit: int) -> int:
        row = self._table.take(self._prefix + key, limit)
        if row == UNSHARED:
            return self._local.take(key, limit)
        return row

    def give(self, key: str, ticket: int) -> None:
        if ticket == UNSHARED:
            self._local.give(key, ticket)
        else:
            self._table.give(ticket)

    def held(self, key: str) -> int:
        return self._table.held(self._prefix + key) + self._local.held(key)
