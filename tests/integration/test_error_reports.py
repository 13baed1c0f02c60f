"""Reporting a failure to a caller that has already left, on a real grpc.aio server.

The status cannot go out (grpc fails the send: the call is gone). That is no failure of the
gateway to log as one, and no reason to report a second time: grpc refuses a second abort
with a UsageError, which it logs as an unexpected error of the servicer. The OpenAI methods
report in two layers (their own envelope inside the ErrorInterceptor), as here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.client import InvalidArgumentError
from gateway.common.rpc import Context
from gateway.service._errors import ErrorInterceptor, abort, reporting

METHOD = "/test.Reports/Stream"


async def _serve(stream: grpc.RpcMethodHandler[bytes, bytes]) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    handlers = {"Stream": stream}
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Reports", handlers)]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_a_failure_after_the_caller_left_is_not_reported_twice_nor_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waiting = asyncio.Event()
    ended = asyncio.Event()

    async def fails_once_left(
        _servicer: None, request: bytes, context: Context
    ) -> AsyncIterator[bytes]:
        yield b"first"
        try:
            waiting.set()
            await asyncio.sleep(30)  # the caller leaves meanwhile: grpc cancels this
        except asyncio.CancelledError:
            # A handler whose clean-up fails as its caller leaves: what is left to report
            # goes to a call that is gone.
            raise InvalidArgumentError("failed as its caller left") from None
        finally:
            ended.set()

    reported = reporting(fails_once_left, abort)  # as the OpenAI face's methods are

    async def stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
        async for response in reported(None, request, context):
            yield response

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_stream_rpc_method_handler(
        stream, request_deserializer=bytes
    )
    server, port = await _serve(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                    METHOD
                )
                call = method(b"")
                assert await call.read() == b"first"
                # Only once the handler waits: a caller that left before grpc had finished
                # sending the first message cancelled the send, and the handler, closed at its
                # yield, never failed (ended was never set: about 1 run in 200 here).
                await asyncio.wait_for(waiting.wait(), 5)
                call.cancel()
                assert await call.code() == grpc.StatusCode.CANCELLED
            await asyncio.wait_for(ended.wait(), 5)
            await asyncio.sleep(0.2)  # what the server does after the handler ended
    finally:
        await server.stop(grace=None)
    # The gateway's records and grpc's: asyncio may also log, in this process, about the loop
    # of an earlier test that grpc's poller was bound to.
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.split(".")[0] in ("gateway", "grpc")
    ]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_method_a_generated_base_leaves_unimplemented_is_unimplemented_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The generated base sets UNIMPLEMENTED, then raises NotImplementedError: the interceptor
    # made that INTERNAL "internal error in sax-gateway", and logged a traceback, at every
    # call (grpc.health.v1 List, which grpcio-health-checking's servicer leaves to its base).
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(health_pb2_grpc.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for call in (
                    health.List(health_pb2.HealthListRequest(), timeout=10),
                    health.Check(health_pb2.HealthCheckRequest(), timeout=10),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        await call
                    assert (raised.value.code(), raised.value.details()) == (
                        grpc.StatusCode.UNIMPLEMENTED,
                        "Method not implemented!",
                    )
                    status = dict(raised.value.trailing_metadata() or ())
                    details = status_pb2.Status.FromString(status["grpc-status-details-bin"])
                    assert (details.code, details.message) == (12, "Method not implemented!")
    finally:
        await server.stop(grace=None)
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.split(".")[0] in ("gateway", "grpc")
    ]
    assert errors == [], [r.getMessage() for r in errors]
