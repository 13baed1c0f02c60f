"""A stream's waits made visible: something sent each time it has sent nothing for a while.

    keepalive = KeepAlive(10.0, partial(context.write, COMMENT), repeat=True)
    async for message in keepalive.relay(stream): ...   # keepalive.sent: whether one went out

An HTTP/1.1 response's status and headers go out with a stream's first message (Envoy's
transcoder has nothing to send before it), and a model may take longer than that to give its
first token (a long prompt, a queue), or between two (the next prompt of a list): a client or
proxy whose read timeout is shorter (nginx's ``proxy_read_timeout``, an SDK's read timeout)
gives up on a healthy stream. The beat sends what keeps it (a Server-Sent Events comment, or
the headers alone) and so commits the stream's 200: from then on a failure has to be reported
in-band, which the caller does.

One timer per stream looks every ``every`` seconds at most (per message the stream only notes
the time), and a beat is sent by a task of its own, only while the stream waits for its source
and so while grpc sends nothing of the call (it asks the stream for its next message only once
the last is sent): no two sends of one call overlap, since the stream waits for a beat under
way before it hands grpc its next message or ends. A stream whose messages come sooner than
``every`` is sent as it would be without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.common.closing import aclose

_T = TypeVar("_T")


class KeepAlive:
    """Sends ``beat()`` when a stream has sent nothing for ``every`` seconds (0: never): until
    its first message, or, with ``repeat``, whenever it waits that long, again each time.
    Only with ``repeat`` may ``beat`` be sent more than once."""

    def __init__(
        self, every: float, beat: Callable[[], Awaitable[object]], *, repeat: bool
    ) -> None:
        self._every = every
        self._beat = beat
        self._repeat = repeat
        self.sent = False
        """Whether a beat was sent (or begun): the stream's status has gone out with it."""
        self._waiting = False  # the stream waits for its source: grpc is sending nothing
        self._last = 0.0  # when the stream last sent something, on the loop's clock
        self._timer: asyncio.TimerHandle | None = None  # when to look again, while armed
        self._beating: asyncio.Task[None] | None = None  # a beat being sent

    async def relay(self, stream: AsyncIterator[_T]) -> AsyncIterator[_T]:
        """``stream``'s messages, beats sent meanwhile; ``stream`` is closed as this ends."""
        if self._every <= 0:
            try:
                async for message in stream:
                    yield message
            finally:
                await aclose(stream)
            return
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._timer = loop.call_at(self._last + self._every, self._due, loop)
        try:
            while True:
                self._waiting = True
                try:
                    message = await anext(stream)
                except StopAsyncIteration:
                    return
                finally:
                    self._waiting = False
                    if self._beating is not None:  # grpc sends nothing else meanwhile
                        await asyncio.wait((self._beating,))
                self._last = loop.time()
                if not self._repeat and self._timer is not None:
                    self._timer.cancel()  # the first message is out: no beat from here on
                    self._timer = None
                yield message
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await aclose(stream)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: a beat if the stream has waited ``every`` seconds, else a later look."""
        now = loop.time()
        if self._waiting and now - self._last >= self._every:
            self._timer = None
            self._beating = loop.create_task(self._send(loop))
            return
        # It sent something meanwhile, or grpc is sending its message still (to a client that
        # reads slowly): nothing to keep alive until ``every`` after either.
        at = self._last + self._every if now - self._last < self._every else now + self._every
        self._timer = loop.call_at(at, self._due, loop)

    async def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sent = True
        try:
            await self._beat()
        except Exception:
            return  # the call is ending (its client left, ...): the stream learns why
        finally:
            self._beating = None
        self._last = loop.time()
        if self._repeat:  # the stream is still on: it waits for this beat before it ends
            self._timer = loop.call_at(self._last + self._every, self._due, loop)
