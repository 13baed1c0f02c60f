"""``async with`` for the long-lived objects that own connections or processes, and steps
that must end once begun."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Self, TypeVar

_T = TypeVar("_T")


async def completing(step: Awaitable[_T]) -> _T:
    """Runs ``step`` to its end even if the caller is cancelled, and only then passes the
    cancellation on: for a step that is not undone by stopping half way (a write in a thread
    that cannot be stopped, a write and the change in memory it records), under a lock that
    the next step must not take first."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the caller is gone, and the step logs its failures
        raise


async def aclose(stream: AsyncIterator[Any]) -> None:
    """Closes ``stream`` if it can be closed (an async generator): its ``finally`` blocks run
    now (a Sax call it holds is cancelled), not when the garbage collector finds it."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


class AsyncClosing:
    """Leaving ``async with obj:`` awaits ``obj.close()``, however the block ended.

    Entering returns the object; a subclass that must start something on entry overrides
    ``__aenter__`` (and closes what it started if starting fails)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
