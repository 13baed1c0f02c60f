"""The concurrency limits the access checks hold calls to: a model's gate (so many run, so many
wait in order, the rest are refused) and a client's count of calls in flight."""

from __future__ import annotations

import asyncio
import logging

from gateway.client import ResourceExhaustedError
from gateway.config import ModelLimit

# The access checks' logger: operators filter on it for refusals and shed calls.
log = logging.getLogger("gateway.service._access")


class Busy(ResourceExhaustedError):
    """A limit is full; the caller may retry after a second (the Retry-After header).

    No x-ratelimit-* headers here: Envoy's rate limit adds those, about the client's bucket.
    """

    metadata = (("retry-after", "1"),)


class Gate:
    """At most ``max_in_flight`` calls at once; ``max_queued`` more wait; the rest are Busy."""

    def __init__(self, limit: ModelLimit) -> None:
        self._slots = asyncio.Semaphore(limit.max_in_flight)
        self._max_queued = limit.max_queued
        self.waiting = 0
        self.users = 0

    async def acquire(self, model: str) -> None:
        if self._slots.locked() and self.waiting >= self._max_queued:
            log.debug("model=%s shed a call: %d waiting", model, self.waiting)
            raise Busy(f"{model} is at its limit of calls in flight and queued; retry later")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    async def try_acquire(self) -> bool:
        """Takes a slot if one is free and no call waits for it; never waits itself."""
        if self._slots.locked():
            return False
        return await self._slots.acquire()  # returns at once: the slot is free

    def release(self) -> None:
        self._slots.release()


class Slot:
    def __init__(self, counts: dict[str, int], client: str, limit: int | None) -> None:
        self._counts, self._client, self._limit = counts, client, limit

    def __enter__(self) -> None:
        held = self._counts.get(self._client, 0)
        if self._limit is not None and held >= self._limit:
            raise Busy(f"client {self._client} has {held} calls in flight, its limit; retry later")
        self._counts[self._client] = held + 1

    def __exit__(self, *exc: object) -> None:
        held = self._counts[self._client] - 1
        if held:
            self._counts[self._client] = held
        else:
            del self._counts[self._client]
