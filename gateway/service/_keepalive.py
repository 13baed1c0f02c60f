"""A stream's wait for its first message, made visible: every ``every`` seconds until it comes.

    async for message in kept_alive(stream, 10.0, waiting):   # waiting(): what to send, or None

An HTTP/1.1 response's status and headers go out with a stream's first message (Envoy's
transcoder has nothing to send before it), and a model may take longer than that to give its
first token (a long prompt, a queue): a client or proxy whose read timeout is shorter (nginx's
``proxy_read_timeout``, an SDK's read timeout) gives up on a healthy stream. ``waiting`` sends
what keeps it (a Server-Sent Events comment, or the headers alone) and so commits the stream's
200: from then on a failure has to be reported in-band, which the caller does.

Only the first message is waited for this way: it runs in a task of its own, raced against a
timer, while the stream's later messages are awaited directly, with nothing added per token.
A stream whose first message comes within ``every`` is sent as it would be without this.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.common.closing import aclose
from gateway.common.rpc import Context

_T = TypeVar("_T")


class Headers:
    """A call's initial metadata, which Envoy's transcoder sends on as the HTTP status and
    headers at once (measured with Envoy 1.40): `send` sends it, once, as a ``waiting`` of
    `kept_alive` for a stream whose messages cannot carry a comment."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.sent = False

    async def send(self) -> None:
        if not self.sent:
            self.sent = True
            await self._context.send_initial_metadata(())


async def _first(stream: AsyncIterator[_T]) -> _T:
    return await anext(stream)


async def kept_alive(
    stream: AsyncIterator[_T], every: float, waiting: Callable[[], Awaitable[_T | None]]
) -> AsyncIterator[_T]:
    """``stream``'s messages; while the first has not come, ``waiting()`` after each ``every``
    seconds, and the message it returns, if any, is sent (``every`` 0: never). ``stream`` is
    closed as this ends."""
    try:
        if every <= 0:
            async for message in stream:
                yield message
            return
        # The first step runs in a task (it copies the call's context variables, whose
        # values are objects the call shares): awaited here, it could not be interrupted
        # to send anything without cancelling it.
        step = asyncio.ensure_future(_first(stream))
        try:
            while not step.done():
                await asyncio.wait((step,), timeout=every)
                if not step.done() and (beat := await waiting()) is not None:
                    yield beat
        finally:
            if not step.done():  # the caller left, or this generator was closed
                step.cancel()
                await asyncio.wait((step,))  # its finally blocks run before the stream closes
            if not step.cancelled():
                step.exception()  # retrieved here, or asyncio logs it as never retrieved
        try:
            first = step.result()
        except StopAsyncIteration:
            return
        yield first
        async for message in stream:
            yield message
    finally:
        await aclose(stream)
