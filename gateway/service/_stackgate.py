"""A model's gate for one of a stack's several gateway processes (`saxgw up|serve --workers N`):
the model's calls in flight, and the calls queued for one, are counted in the table the
stack's processes share (gateway/common/slottable.py, as the per-client counts are), so that
``quotas.model`` holds for the stack, not once per process (N processes let N times
``max_in_flight`` calls reach the model, and one busy process refused a call another, idle
for the model, would have run).

A slot that another process frees is not announced: the first call queued in this process
asks the table for one (a lock held for microseconds) after 1 ms, then at most every
`POLL_MAX_S`, until its deadline. One that this process frees goes to that call at once,
unless calls are queued in another process too: then it is left to them for `HANDOFF_S`
(their first call asks within `POLL_MAX_S`), so that no process's queue waits for another's
to empty. Within a process queued calls keep their order; across processes, the first to ask
takes a slot. A gateway run alone keeps `_gates.Gate`, which shares nothing and polls nothing.

    models = StackCounts(SharedCounts(table, "models"), SharedCounts(table, "queued"))
    gate = StackGate(ModelLimit(max_in_flight=4), models, "/sax/test/lm")
    await gate.acquire("/sax/test/lm", deadline)  # as `Gate.acquire`
    gate.release()
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from gateway.common.deadline import Deadline, now
from gateway.config import ModelLimit
from gateway.service._counts import AtLimit, Counts
from gateway.service._gates import WaitCounts, out_of_time, shed, uncounted, wait_end

#: A queued call asks the table for a slot freed elsewhere after this long, then twice as
#: long each time, up to `POLL_MAX_S`: what such a slot may stay idle, at most.
POLL_FIRST_S = 0.001
POLL_MAX_S = 0.01
#: How long a slot freed here is left to calls queued in other processes, before this one's.
HANDOFF_S = 2 * POLL_MAX_S


@dataclass(frozen=True)
class StackCounts:
    """The stack's counts of each model's calls in flight (``running``) and queued."""

    running: Counts
    queued: Counts


class StackGate:
    """`_gates.Gate` with its counts in the stack's table: at most ``max_in_flight`` calls of
    the model in flight across the stack's gateway processes, ``max_queued`` more waiting."""

    def __init__(
        self, limit: ModelLimit, counts: StackCounts, model: str, waits: WaitCounts = uncounted
    ) -> None:
        self._max_in_flight, self._max_queued = limit.max_in_flight, limit.max_queued
        self._counts, self._model = counts, model
        self._waits = waits  # this process's waiting calls, for its queue gauge
        self._tickets: list[int] = []  # this process's slots, to give back
        self._queue = asyncio.Lock()  # held by the first of this process's queued calls
        self._freed = asyncio.Event()  # a slot of this process given back: wakes that call
        self._waiting = 0
        self._queued_here = 0  # of the stack's queued calls (`StackCounts.queued`)
        self._handoff_until = 0.0  # a slot freed here is the other processes' until then
        self.users = 0

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot: this process's, or the stack's queue (at least)."""
        return self._waiting or self._counts.queued.held(self._model)

    def _take(self) -> bool:
        try:
            self._tickets.append(self._counts.running.take(self._model, self._max_in_flight))
        except AtLimit:
            return False
        return True

    async def acquire(self, model: str, deadline: Deadline) -> None:
        """As `Gate.acquire`, its slot and queue the stack's: a call takes a free slot at
        once unless calls wait in this process, joins the queue if the stack's is not full
        (else Busy), and waits until ``deadline`` (or its retries' end) for a slot."""
        if not self._waiting and now() >= self._handoff_until and self._take():
            return
        if self._max_queued <= 0:
            raise shed(model, 0)
        queued = self._counts.queued
        try:
            ticket = queued.take(model, self._max_queued)
        except AtLimit as full:
            raise shed(model, full.held) from None
        self._queued_here += 1
        try:
            await self._wait(model, *wait_end(deadline))
        finally:
            self._queued_here -= 1
            queued.give(model, ticket)

    async def pass_on(self, model: str, deadline: Deadline) -> None:
        """As `Gate.pass_on`: the slot to the calls waiting for one (`release`), and this
        request back in line behind this process's."""
        if not self.waiting:
            return
        self.release()
        await self._wait(model, deadline.at, False)

    async def _wait(self, model: str, until: float, busy: bool) -> None:
        """Waits behind this process's earlier calls, then asks the table for a slot, until
        ``until``: then Busy if ``busy``, else DeadlineExceededError (`_gates.out_of_time`)."""
        counted = self._waits(model)
        counted.calls += 1
        self._waiting += 1
        try:
            async with asyncio.timeout(None if until == math.inf else until - now()):
                async with self._queue:
                    pause = POLL_FIRST_S
                    while now() < self._handoff_until or not self._take():
                        self._freed.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(pause):
                                await self._freed.wait()
                        pause = min(pause * 2, POLL_MAX_S)
        except TimeoutError:
            raise out_of_time(model, busy) from None
        finally:
            self._waiting -= 1
            counted.calls -= 1

    async def try_acquire(self) -> bool:
        """Takes a slot if one is free and no call waits for it; never waits itself."""
        return not self.waiting and self._take()

    def release(self) -> None:
        """Gives the slot back: to the first call queued here at once, unless calls are
        queued in another process (then to them, for `HANDOFF_S`)."""
        self._counts.running.give(self._model, self._tickets.pop())
        if self._counts.queued.held(self._model) > self._queued_here:
            self._handoff_until = now() + HANDOFF_S
        else:
            self._freed.set()
