"""A counter that callers wait on until it reaches a threshold (WaitForReady).

Unlike upstream's, a wait also ends when loading failed everywhere (`set_failure`): with
FAILED_PRECONDITION and the load error, as data calls end, rather than at the deadline.
"""

from __future__ import annotations

import asyncio

import grpc

from gateway.cell._errors import cell_error


class ReadyCounter:
    def __init__(self, *, model_id: str) -> None:
        self._model_id = model_id
        self._value = 0
        self._closed = False
        self._failure: str | None = None
        self._changed = asyncio.Event()

    @property
    def value(self) -> int:
        return self._value

    def set(self, value: int) -> None:
        if value != self._value:
            self._value = value
            self._wake()

    def set_failure(self, failure: str | None) -> None:
        """Records (or clears) why no replica will come; fails the waiters when it is new."""
        if failure != self._failure:
            self._failure = failure
            self._wake()

    def close(self) -> None:
        """Fails every waiter with CANCELLED (the model was unpublished)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        # One event per generation: waiters of the old one wake, later waiters get a new one.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, threshold: int) -> None:
        while self._value < threshold:
            if self._closed:
                raise cell_error(
                    grpc.StatusCode.CANCELLED,
                    f"model {self._model_id} was unpublished while waiting for it to be ready",
                )
            if self._failure is not None:
                raise cell_error(grpc.StatusCode.FAILED_PRECONDITION, self._failure)
            await self._changed.wait()
