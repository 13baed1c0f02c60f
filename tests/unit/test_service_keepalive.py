"""A stream's wait for its first message: what `kept_alive` sends meanwhile, and that it leaves
no task, timer or unretrieved error behind however the stream ends."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.common.closing import aclose
from gateway.service._keepalive import kept_alive

EVERY = 0.1
BEAT = "beat"


class Source:
    """A stream of ``items``, each after ``delays[i]`` seconds (then ``failure`` after the next
    delay, if any), that remembers how it ended."""

    def __init__(
        self, items: list[object], delays: list[float], failure: Exception | None = None
    ) -> None:
        self.items, self.delays, self.failure = items, delays, failure
        self.closed = False
        self.cancelled = False

    async def stream(self) -> AsyncIterator[object]:
        try:
            for item, delay in zip(self.items, self.delays, strict=False):  # one more: failure
                await asyncio.sleep(delay)
                yield item
            if self.failure is not None:
                await asyncio.sleep(self.delays[len(self.items)])
                raise self.failure
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True


async def _waiting() -> str:
    return BEAT


async def _run(source: Source, every: float = EVERY) -> list[object]:
    return [m async for m in kept_alive(source.stream(), every, _waiting)]


def _no_task_left() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_stream_whose_first_message_comes_in_time_is_sent_as_it_is() -> None:
    source = Source([1, 2, 3], [0.01, 0.2, 0.0])  # a long gap after the first: nothing sent
    assert await _run(source) == [1, 2, 3]
    assert source.closed and not source.cancelled
    _no_task_left()


async def test_a_slow_first_message_comes_after_what_waiting_sends_each_time() -> None:
    source = Source([1, 2], [0.35, 0.25])
    received = await _run(source)
    assert received[-2:] == [1, 2]
    assert 2 <= len(received[:-2]) <= 3 and set(received[:-2]) == {BEAT}
    _no_task_left()


async def test_every_0_sends_nothing_and_starts_no_task() -> None:
    source = Source([1], [0.15])
    stream = kept_alive(source.stream(), 0, _waiting)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == 2  # the test's and `first`: no step of its own
    assert await first == 1
    await aclose(stream)


async def test_a_failure_before_the_first_message_is_raised_after_the_beats() -> None:
    source = Source([], [0.25], failure=ValueError("no replica"))
    received: list[object] = []
    with pytest.raises(ValueError, match="no replica"):
        async for message in kept_alive(source.stream(), EVERY, _waiting):
            received.append(message)
    assert received and set(received) == {BEAT}
    _no_task_left()


@pytest.mark.parametrize("how", ["closed", "cancelled"])
async def test_a_caller_that_leaves_while_waiting_cancels_and_closes_the_stream(
    how: str,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    source = Source([1], [30.0])
    stream = kept_alive(source.stream(), EVERY, _waiting)
    if how == "closed":  # grpc closes the handler's generator
        assert await anext(stream) == BEAT
        await aclose(stream)
    else:  # the call's task is cancelled (its client left) while it waits
        reading = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(EVERY / 2)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await aclose(stream)
    # The first step, in its own task, was cancelled there (as its client's leaving: the Sax
    # client tells that from a connection closed under it) and ended before this returned.
    assert source.cancelled and source.closed
    _no_task_left()
    gc.collect()
    await asyncio.sleep(0)
    assert errors == []
