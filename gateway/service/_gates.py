"""The concurrency limits the access checks hold calls to: a model's gate (so many run, so many
wait in order, the rest are refused) and a client's count of calls in flight (in this process,
or shared by the stack's gateway processes: gateway/service/_counts.py)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from gateway.client import DeadlineExceededError, ResourceExhaustedError
from gateway.common.deadline import Deadline, now
from gateway.config import ModelLimit
from gateway.service._counts import AtLimit, Counts

# The access checks' logger: operators filter on it for refusals and shed calls.
log = logging.getLogger("gateway.service._access")


class Busy(ResourceExhaustedError):
    """A limit is full; the caller may retry after a second (the Retry-After header).

    No x-ratelimit-* headers here: Envoy's rate limit adds those, about the client's bucket.
    """

    metadata = (("retry-after", "1"),)


class WaitCount:
    """Where a model's waiting calls are counted for an observer (the gateway's queue gauge,
    `GatewayMetrics.queues`, which writes it out at its flush): each call adds 1 to
    ``calls`` while it waits for a slot. A plain int: a queued call costs no write."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0


#: The count a call that begins to wait for a slot of a model moves (given the model), asked
#: as it begins: it moves the same count back when it stops, whatever the observer has done
#: with the model since. Calls that take a free slot at once ask nothing.
WaitCounts = Callable[[str], WaitCount]

_UNCOUNTED = WaitCount()


def uncounted(model: str) -> WaitCount:
    """`WaitCounts` without an observer (metrics off): one count no one reads."""
    return _UNCOUNTED


# Two ends of a wait closer than this are one (`Gate.acquire`).
_SAME_S = 0.001


def shed(model: str, waiting: int) -> Busy:
    """The refusal of a call that finds the model's slots taken and its queue full."""
    log.debug("model=%s shed a call: %d waiting", model, waiting)
    return Busy(f"{model} is at its limit of calls in flight and queued; retry later")


def wait_end(deadline: Deadline) -> tuple[float, bool]:
    """Until when a queued call waits, and whether its end is its retries' (then Busy): they
    end its wait if they end sooner (by more than the µs between reading one grpc deadline
    twice: both may be that deadline)."""
    busy = deadline.retry_by < deadline.at - _SAME_S
    return (deadline.retry_by if busy else deadline.at), busy


def out_of_time(model: str, busy: bool) -> Exception:
    """The end of a queued call whose wait ran out: Busy if ``busy`` (its retries ended),
    else DeadlineExceededError."""
    if busy:
        log.debug("model=%s shed a queued call: no slot before its retries ended", model)
        return Busy(
            f"{model} is at its limit of calls in flight: no slot came free in time; retry later"
        )
    return DeadlineExceededError(
        f"call to {model} exceeded its deadline waiting in the model's queue for a free slot"
    )


class Gate:
    """At most ``max_in_flight`` calls at once; ``max_queued`` more wait; the rest are Busy."""

    def __init__(self, limit: ModelLimit, waits: WaitCounts = uncounted) -> None:
        self._slots = asyncio.Semaphore(limit.max_in_flight)
        self._max_queued = limit.max_queued
        self._waits = waits
        self.waiting = 0
        self.users = 0

    async def acquire(self, model: str, deadline: Deadline) -> None:
        """Takes a slot: at once if one is free, else in order behind the calls waiting, until
        ``deadline`` (then DeadlineExceededError, a moment before grpc's own deadline would
        end the call with a bare status: `_fields.REPORT_MARGIN_S`), or until its retries
        end, if sooner (then Busy). A stream may decode for ten minutes, but a model too busy
        to start it is reported when a unary call's wait would be: a 429 the caller backs
        off on, not ten minutes without a byte."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: taken without a wait, so nothing to bound
            return
        if self.waiting >= self._max_queued:
            raise shed(model, self.waiting)
        await self._wait(model, *wait_end(deadline))

    async def pass_on(self, model: str, deadline: Deadline) -> None:
        """Between two calls of one request that holds a slot (an OpenAI request's prompts):
        if calls wait for a slot, gives this one to the first of them and waits in line
        behind them for the next, until ``deadline`` (then DeadlineExceededError, the slot
        no longer held). The request was admitted: it waits however long the queue is, and is
        no call to shed. Without calls waiting it keeps its slot, at the cost of one test."""
        if not self.waiting:
            return
        self._slots.release()  # to the first waiter: asyncio's semaphore hands it on in order
        await self._wait(model, deadline.at, False)

    async def _wait(self, model: str, until: float, busy: bool) -> None:
        """Waits in line for a slot until ``until``: then Busy if ``busy`` (the call's retries
        ended), else DeadlineExceededError."""
        counted = self._waits(model)
        counted.calls += 1
        self.waiting += 1
        try:
            # A wait cut short takes no slot: asyncio's semaphore hands a slot it had just
            # given the waiter on to the next one.
            async with asyncio.timeout(None if until == math.inf else until - now()):
                await self._slots.acquire()
        except TimeoutError:
            raise out_of_time(model, busy) from None
        finally:
            self.waiting -= 1
            counted.calls -= 1

    async def try_acquire(self) -> bool:
        """Takes a slot if one is free and no call waits for it; never waits itself."""
        if self._slots.locked():
            return False
        return await self._slots.acquire()  # returns at once: the slot is free

    def release(self) -> None:
        self._slots.release()


class Slot:
    """One call of ``client`` counted in ``counts`` while it runs; Busy at ``limit``."""

    __slots__ = ("_client", "_counts", "_limit", "_ticket")

    def __init__(self, counts: Counts, client: str, limit: int) -> None:
        self._counts, self._client, self._limit = counts, client, limit
        self._ticket = 0

    def __enter__(self) -> None:
        try:
            self._ticket = self._counts.take(self._client, self._limit)
        except AtLimit as full:
            raise Busy(
                f"client {self._client} has {full.held} calls in flight, its limit; retry later"
            ) from None

    def __exit__(self, *exc: object) -> None:
        self._counts.give(self._client, self._ticket)

    def spare(self) -> int | None:
        """Counts one more call of the client if its limit leaves room now (never waits, never
        Busy): the ticket to `give` back when that call ends; None at the limit."""
        try:
            return self._counts.take(self._client, self._limit)
        except AtLimit:
            return None

    def give(self, ticket: int) -> None:
        self._counts.give(self._client, ticket)


class Unlimited:
    """The slot of a client without a limit: nothing to count (no cost on the common path)."""

    __slots__ = ()

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass

    def spare(self) -> int | None:
        return 0

    def give(self, ticket: int) -> None:
        pass


UNLIMITED = Unlimited()
