"""tests/conftest.py's ClosedLoopCallbacks: a grpc.aio call left open by a loop that has
closed makes the next loop log 'Event loop is closed' (the record that failed an unrelated
test in CI); the filter drops exactly that record and lets other asyncio errors through."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc import aio

from tests._closed_loops import asyncio_records
from tests.conftest import ClosedLoopCallbacks


async def _slow_server() -> tuple[aio.Server, int]:
    async def never_answers(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        await asyncio.sleep(60)
        return b""

    server = aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        never_answers
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {"M": handler}),))
    await server.start()
    return server, port


def _a_call_outlives_its_loop() -> None:
    """Loop B serves; loop A makes a call and closes with the call open; B stops its server,
    so the call completes, and grpc hands the completion to A's closed loop."""
    loop_b = asyncio.new_event_loop()
    server, port = loop_b.run_until_complete(_slow_server())

    async def leave_a_call() -> tuple[aio.Channel, object]:
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        method: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.S/M")
        call = method(b"")
        await asyncio.sleep(0.3)
        return channel, call

    loop_a = asyncio.new_event_loop()
    kept = loop_a.run_until_complete(leave_a_call())
    loop_a.close()

    async def stop() -> None:
        await server.stop(None)
        await asyncio.sleep(0.5)

    loop_b.run_until_complete(stop())
    loop_b.close()
    del kept


def test_the_record_a_closed_loop_makes_is_real_and_is_the_one_dropped() -> None:
    with asyncio_records() as records:
        _a_call_outlives_its_loop()
    closed = [r for r in records if "Event loop is closed" in str(r.exc_info)]
    assert closed, [r.getMessage() for r in records]
    assert [ClosedLoopCallbacks().filter(r) for r in closed] == [False] * len(closed)

    try:
        raise RuntimeError("Event loop is closed")
    except RuntimeError as error:
        other = logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "Task exception was never retrieved",
            None,
            (RuntimeError, error, error.__traceback__),
        )
    assert ClosedLoopCallbacks().filter(other) is True


def test_with_the_session_filter_a_test_captures_no_such_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert any(isinstance(f, ClosedLoopCallbacks) for f in logging.getLogger("asyncio").filters)
    _a_call_outlives_its_loop()
    assert [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR] == []
