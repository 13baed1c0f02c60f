"""Catching what grpc.aio leaves to an event loop that has closed: a grpc operation still
pending when its loop ends completes later, on whichever loop polls grpc next, which logs
asyncio's ERROR 'Exception in callback PollerCompletionQueue._handle_events' with
RuntimeError('Event loop is closed'). tests/conftest.py drops that record for the session
(the harness's own loops make it too); these helpers see it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

import grpc

from tests._grpc import aio_channel


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def asyncio_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the "asyncio" logger while in the block, the session's filters off."""
    asyncio_logger = logging.getLogger("asyncio")
    session_filters = list(asyncio_logger.filters)
    for installed in session_filters:
        asyncio_logger.removeFilter(installed)
    kept = _Kept()
    asyncio_logger.addHandler(kept)
    try:
        yield kept.records
    finally:
        asyncio_logger.removeHandler(kept)
        for installed in session_filters:
            asyncio_logger.addFilter(installed)


def closed_loop_records(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if "Event loop is closed" in str(r.exc_info)]


async def _poll_grpc() -> None:
    """A call that fails at once (nothing listens on port 1): it has this loop poll grpc's
    completions, and so handle any an earlier loop left (grpc hands them over in order)."""
    async with aio_channel("127.0.0.1:1") as channel:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.S/M")
        with suppress(grpc.aio.AioRpcError):
            await method(b"", timeout=5)


def left_to_later_loops(work: Callable[[], Awaitable[None]]) -> list[str]:
    """Runs ``work`` in an event loop of its own and closes it, then has a second loop poll
    grpc: the 'Event loop is closed' records that the second loop logged for the first."""
    with asyncio_records() as records:
        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(work())
        finally:
            first.close()
        second = asyncio.new_event_loop()
        try:
            second.run_until_complete(_poll_grpc())
        finally:
            second.close()
    return closed_loop_records(records)
