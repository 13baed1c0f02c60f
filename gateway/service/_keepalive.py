"""A stream's waits made visible: something sent each time it has sent nothing for a while.

    keepalive = KeepAlive(10.0, context.write, COMMENT, repeat=True)
    keepalive.start()
    try:
        ... async with keepalive:   # in the stream's own generator, at each message
                message = await anext(stream)
    finally:
        keepalive.stop()
    # keepalive.sent: whether a beat went out (and with it the stream's status)

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
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

_Beat = TypeVar("_Beat")
_T = TypeVar("_T")


class KeepAlive(Generic[_Beat]):
    """Calls ``send(beat)`` when a stream has sent nothing for ``every`` seconds (0: never):
    until its first message, or, with ``repeat``, whenever it waits that long, again each time.
    Only with ``repeat`` may ``beat`` be sent more than once."""

    # One per open stream: no __dict__ (10,000 streams are a target), and ``send`` and
    # ``beat`` apart rather than a partial (that, its arguments and keywords: 0.2 KB more).
    __slots__ = (
        "_beat",
        "_beating",
        "_every",
        "_last",
        "_repeat",
        "_send_beat",
        "_stopped",
        "_timer",
        "_waiting",
        "sent",
    )

    def __init__(
        self, every: float, send: Callable[[_Beat], Awaitable[object]], beat: _Beat, *, repeat: bool
    ) -> None:
        self._every = every
        self._send_beat, self._beat = send, beat
        self._repeat = repeat
        self.sent = False  # a beat was sent (or begun): the stream's status went out with it
        self._waiting = False  # the stream waits for its source: grpc is sending nothing
        self._last = 0.0  # when the stream last sent something, on time.monotonic, as deadlines
        self._timer: asyncio.TimerHandle | None = None  # when to look again, while armed
        self._beating: asyncio.Task[None] | None = None  # a beat being sent
        self._stopped = False  # a beat that ends after `stop` arms no timer

    def start(self) -> None:
        """Arms the timer: the stream starts waiting now (`stop` must follow)."""
        if self._every > 0:
            loop = asyncio.get_running_loop()
            self._last = time.monotonic()
            self._timer = loop.call_later(self._every, self._due, loop)

    def stop(self) -> None:
        """No beat from now on (a beat already being sent finishes)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __aenter__(self) -> None:
        """The stream waits for its source (``async with keepalive: await anext(source)``):
        beats may be sent meanwhile. A block in the stream's own generator, not a generator
        around the stream: that layer would live as long as each stream (two cost a gateway
        1.7 KB per open stream)."""
        self._waiting = self._every > 0

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """The wait is over: a beat under way ends first (grpc sends nothing else meanwhile)."""
        if not self._waiting:
            return
        self._waiting = False
        if self._beating is not None:
            await asyncio.wait((self._beating,))
        if kind is None:  # a message: the stream sends it now
            self._last = time.monotonic()
            if not self._repeat and self._timer is not None:
                self._timer.cancel()  # the first message is out: no beat from here on
                self._timer = None

    async def bridge(self, waited: Awaitable[_T]) -> _T:
        """``await waited``, a wait before the stream's source (a model's queue): beats may be
        sent meanwhile, as while it waits for a message, but its end sends none."""
        await self.__aenter__()
        try:
            return await waited
        finally:
            # Ended as a wait that raised is: no message went out, so no time is noted and
            # the first message's beat stays due.
            await self.__aexit__(BaseException)

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: a beat if the stream has waited ``every`` seconds, else a later look."""
        now = time.monotonic()
        if self._waiting and now - self._last >= self._every:
            self._timer = None
            self._beating = loop.create_task(self._send(loop))
            return
        # It sent something meanwhile, or grpc is sending its message still (to a client that
        # reads slowly): nothing to keep alive until ``every`` after either.
        at = self._last + self._every if now - self._last < self._every else now + self._every
        self._timer = loop.call_later(at - now, self._due, loop)

    async def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sent = True
        try:
            await self._send_beat(self._beat)
        except Exception:
            return  # the call is ending (its client left, ...): the stream learns why
        finally:
            self._beating = None
        self._last = time.monotonic()
        if self._repeat and not self._stopped:  # the stream waits for this beat before it ends
            self._timer = loop.call_later(self._every, self._due, loop)
