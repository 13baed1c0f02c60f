"""The part of grpc.aio's ServicerContext the gateway uses, typed (grpc ships no hints)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn, Protocol


class Context(Protocol):
    """What a servicer may ask of its call's context."""

    def peer(self) -> str:
        """The caller's address, e.g. "ipv4:127.0.0.1:54321"."""

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline, or None without one."""

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]] | None:
        """The request's metadata (headers), e.g. Envoy's ``x-request-id``."""

    async def abort(
        self,
        code: object,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> NoReturn:
        """Ends the call with a status; never returns."""
