"""``async with`` for the long-lived objects that own connections or processes."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
