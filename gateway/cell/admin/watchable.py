"""A set of strings (model server addresses) that clients long-poll for changes.

Sax's WatchLoc protocol: every addition or deletion gets the next sequence number. A caller
in sync up to seqno S gets the mutations from S on, or, when the log no longer reaches back to
S, the full set plus the log. A caller already up to date waits for the next mutation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from saxml.protobuf import admin_pb2


@dataclass(frozen=True)
class Mutation:
    added: bool
    value: str


@dataclass
class WatchResult:
    """Values (when not None) is the full set that the changelog applies on top of."""

    next_seqno: int
    values: list[str] | None = None
    changelog: list[Mutation] = field(default_factory=list)

    def to_proto(self) -> admin_pb2.WatchResult:
        result = admin_pb2.WatchResult(next_seqno=self.next_seqno)
        if self.values is not None:
            result.has_fullset = True
            result.values.extend(sorted(self.values))
        for mutation in self.changelog:
            item = result.changelog.add()
            if mutation.added:
                item.addition = mutation.value
            else:
                item.deletion = mutation.value
        return result


class WatchableSet:
    """The set, its recent mutation log and the waiters for the next mutation."""

    def __init__(self) -> None:
        # The set as of `_base_seqno`; `_log` holds mutations _base_seqno .. _next_seqno - 1.
        self._base: set[str] = set()
        self._log: list[Mutation] = []
        self._next_seqno = 0
        self._changed = asyncio.Event()
        self._closed = False
        #: Why no value will come (every assigned server failed to load the model), if so.
        self.failure: str | None = None

    @property
    def _base_seqno(self) -> int:
        return self._next_seqno - len(self._log)

    def current(self) -> set[str]:
        values = set(self._base)
        for mutation in self._log:
            _apply(values, mutation)
        return values

    def add(self, value: str) -> None:
        self._mutate(Mutation(added=True, value=value))

    def discard(self, value: str) -> None:
        self._mutate(Mutation(added=False, value=value))

    def sync_to(self, wanted: set[str]) -> None:
        """Adds and removes values so that the set equals `wanted`."""
        current = self.current()
        for value in sorted(current - wanted):
            self.discard(value)
        for value in sorted(wanted - current):
            self.add(value)

    def _mutate(self, mutation: Mutation) -> None:
        self._log.append(mutation)
        self._next_seqno += 1
        # Fold the older half of the log into the base so it stays within twice the set size.
        if len(self._log) >= 2 and len(self._log) > 2 * len(self._base):
            half = len(self._log) // 2
            for old in self._log[:half]:
                _apply(self._base, old)
            del self._log[:half]
        self._changed.set()
        self._changed = asyncio.Event()

    def set_failure(self, failure: str | None) -> None:
        """Records (or clears) why the set stays empty; releases waiters when it is new."""
        if failure != self.failure:
            self.failure = failure
            self._changed.set()
            self._changed = asyncio.Event()

    def close(self) -> None:
        """Releases every watcher with an empty full set (the model is gone)."""
        self._closed = True
        self._changed.set()

    def full(self) -> WatchResult:
        return WatchResult(next_seqno=self._next_seqno, values=sorted(self.current()))

    async def watch(self, seqno: int) -> WatchResult:
        """Mutations from seqno on; waits while there are none."""
        while True:
            if self._closed:
                return WatchResult(next_seqno=0, values=[])
            if self.failure is not None:
                return WatchResult(next_seqno=self._next_seqno)  # the caller reports it
            if seqno < self._base_seqno:
                return WatchResult(
                    next_seqno=self._next_seqno,
                    values=sorted(self._base),
                    changelog=list(self._log),
                )
            if seqno < self._next_seqno:
                start = seqno - self._base_seqno
                return WatchResult(next_seqno=self._next_seqno, changelog=self._log[start:])
            if seqno > self._next_seqno:
                # The caller is ahead (it followed another incarnation): tell it where we are.
                return WatchResult(next_seqno=self._next_seqno)
            await self._changed.wait()


def _apply(values: set[str], mutation: Mutation) -> None:
    if mutation.added:
        values.add(mutation.value)
    else:
        values.discard(mutation.value)
