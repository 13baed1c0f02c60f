"""A stream's waits: when `KeepAlive` sends its beat, that no beat overlaps a message being
sent, and that it leaves no task or unretrieved error behind however the stream ends."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.common.closing import aclose
from gateway.service._keepalive import KeepAlive
from tests._wait import until

EVERY = 0.1


async def _relay(keepalive: KeepAlive[str], stream: AsyncIterator[object]) -> AsyncIterator[object]:
    """``stream`` as the servicers relay it: the keep-alive awaited in their own generator."""
    keepalive.start()
    try:
        while True:
            try:
                async with keepalive:
                    message = await anext(stream)
            except StopAsyncIteration:
                return
            yield message
    finally:
        keepalive.stop()
        await aclose(stream)


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


class Call:
    """What grpc does with a stream: sends each message (``send_s`` each), in turn; and the
    beats a `KeepAlive` sends on it, in one log with the messages."""

    def __init__(self, send_s: float = 0.0, beat_s: float = 0.0) -> None:
        self.send_s, self.beat_s = send_s, beat_s
        self.log: list[object] = []
        self.sending = False

    async def beat(self, beat: str) -> None:
        assert not self.sending, "a beat overlapped a message"
        self.sending = True
        await asyncio.sleep(self.beat_s)
        self.log.append(beat)
        self.sending = False

    async def send(self, messages: AsyncIterator[object]) -> None:
        async for message in messages:
            assert not self.sending, "a message overlapped a beat"
            self.sending = True
            await asyncio.sleep(self.send_s)
            self.log.append(message)
            self.sending = False


def _no_task_left() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def _run(source: Source, call: Call, repeat: bool = True, every: float = EVERY) -> None:
    await call.send(_relay(KeepAlive(every, call.beat, "beat", repeat=repeat), source.stream()))


async def test_a_stream_that_never_waits_long_sends_no_beat() -> None:
    source, call = Source([1, 2, 3], [0.01, 0.05, 0.0]), Call()
    await _run(source, call)
    assert call.log == [1, 2, 3]
    assert source.closed and not source.cancelled
    _no_task_left()


async def test_a_beat_each_time_the_stream_waits_long_before_or_between_messages() -> None:
    source, call = Source([1, 2, 3], [0.25, 0.0, 0.25]), Call()
    await _run(source, call)
    first, second = call.log.index(1), call.log.index(3)
    # At least one beat in each wait; more when a loaded host wakes the source late (3 beats
    # came before the first message in a full run at load 8).
    assert first >= 1 and call.log[:first] == ["beat"] * first
    assert call.log[first : first + 2] == [1, 2]
    assert call.log[first + 2 : second] == ["beat"] * (second - first - 2) and second > first + 2
    _no_task_left()


async def test_without_repeat_one_beat_at_most_and_none_after_the_first_message() -> None:
    source, call = Source([1, 2], [0.35, 0.25]), Call()
    await _run(source, call, repeat=False)
    assert call.log == ["beat", 1, 2]
    source, call = Source([1, 2], [0.0, 0.25]), Call()
    await _run(source, call, repeat=False)
    assert call.log == [1, 2]
    _no_task_left()


async def test_a_message_that_comes_during_a_beat_waits_for_it() -> None:
    # The beat takes 0.1 s (a slow client); the message comes half way through it.
    source, call = Source([1], [EVERY * 1.5]), Call(beat_s=EVERY)
    await _run(source, call)  # the Call asserts that no two sends overlap
    assert call.log == ["beat", 1]
    _no_task_left()


async def test_every_0_sends_nothing_and_starts_no_task() -> None:
    source, call = Source([1], [0.15]), Call()
    sending = asyncio.ensure_future(_run(source, call, every=0))
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == 2  # the test's and `sending`: no keeper
    await sending
    assert call.log == [1]


async def test_a_failure_is_raised_after_the_beats() -> None:
    source, call = Source([], [0.25], failure=ValueError("no replica")), Call()
    with pytest.raises(ValueError, match="no replica"):
        await _run(source, call)
    assert call.log and set(call.log) == {"beat"}
    _no_task_left()


async def test_a_caller_that_leaves_while_waiting_cancels_the_stream() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    source, call = Source([1], [30.0]), Call()
    keepalive = KeepAlive(EVERY, call.beat, "beat", repeat=True)
    reading = asyncio.ensure_future(anext(_relay(keepalive, source.stream())))
    # Two beats (each EVERY after the last): a fixed EVERY * 2.5 saw one on a loop held up.
    await until("two beats sent", lambda: len(call.log) == 2)
    assert keepalive.sent and call.log == ["beat", "beat"]
    reading.cancel()  # as grpc cancels the call's task when its client leaves
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert source.cancelled and source.closed
    _no_task_left()
    gc.collect()
    await asyncio.sleep(0)
    assert errors == []


async def test_no_beat_while_a_message_is_out_and_none_once_closed() -> None:
    # Between two messages, grpc holds the stream while it sends (a client that reads
    # slowly): that is no wait of the stream's. Then grpc closes it (the call failed).
    source, call = Source([1, 2], [0.0, 30.0]), Call()
    stream = _relay(KeepAlive(EVERY, call.beat, "beat", repeat=True), source.stream())
    assert await anext(stream) == 1
    await asyncio.sleep(EVERY * 2.5)
    await aclose(stream)
    assert call.log == [] and source.closed and not source.cancelled
    _no_task_left()


async def test_a_beat_that_fails_ends_the_beats_not_the_stream() -> None:
    async def gone(_: str) -> None:
        raise RuntimeError("the call has ended")

    source = Source([1], [0.25])
    keepalive = KeepAlive(EVERY, gone, "beat", repeat=True)
    assert [m async for m in _relay(keepalive, source.stream())] == [1]
    assert keepalive.sent
    _no_task_left()
