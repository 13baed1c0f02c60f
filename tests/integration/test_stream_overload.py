"""How long a SaxGateway stream waits for an overloaded model: it may decode for the stream
timeout (600 s), but its retries of overloaded replicas stop where a unary call's would (the
gateway's --default-timeout, or the caller's own deadline), or at the end of the Sax client's
overload window (--overloaded-after, 1 s) if sooner: a window longer than the default timeout
here, so that the default is what ends them. Over real gRPC, against an in-process cell whose
model answers every call RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.client import ClientSettings
from gateway.service import GatewayServer
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
MODEL = "/sax/test/busy"
SLOW = "/sax/test/slow-stream"
SLOW_TEXT = " ".join(["tok"] * 10)  # 200 ms each: 2 s of decoding, over DEFAULT_TIMEOUT
DEFAULT_TIMEOUT = 1.5


@pytest.fixture
async def gateway(inproc_cell: InprocCell) -> AsyncIterator[GatewayServer]:
    client = ClientSettings(sax_root=inproc_cell.settings.sax_root, overloaded_after=30)
    async with running_gateway(
        inproc_cell.settings.sax_root, client, default_timeout=DEFAULT_TIMEOUT
    ) as server:
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            overrides = {"fail_after_tokens": "0", "fail_code": "RESOURCE_EXHAUSTED"}
            request = pb.PublishModelRequest(
                model=MODEL, model_path=TEST_LM, checkpoint="None", replicas=1, overrides=overrides
            )
            await stub.PublishModel(request)
            overrides = {"text": SLOW_TEXT, "delay_ms": "200"}
            request = pb.PublishModelRequest(
                model=SLOW, model_path=TEST_LM, checkpoint="None", replicas=1, overrides=overrides
            )
            await stub.PublishModel(request)
            for model in (MODEL, SLOW):
                await stub.WaitForReady(pb.WaitForReadyRequest(model=model), timeout=10)
        yield server


async def _stream_error(gateway: GatewayServer) -> tuple[grpc.StatusCode, float]:
    """How a stream on the overloaded model ends, sent with no deadline, and when."""
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        request = pb.GenerateStreamRequest(model=MODEL, query="q")
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async with asyncio.timeout(20):  # the old code retried for the stream timeout
                _ = [m async for m in stub.GenerateStream(request)]
        return failure.value.code(), time.monotonic() - started


async def test_an_overloaded_stream_without_a_deadline_ends_when_a_unary_call_would(
    gateway: GatewayServer,
) -> None:
    code, took = await _stream_error(gateway)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Retried until a retry would start past DEFAULT_TIMEOUT: 0.9 to 1.5 s with the backoff's
    # jitter (a floor of 1.0 s could fail on a quiet host); the bads are no retry at all (at
    # once) and the stream's own 600 s.
    assert DEFAULT_TIMEOUT / 3 < took < DEFAULT_TIMEOUT + 3


async def test_a_stream_still_decodes_past_the_unary_default(gateway: GatewayServer) -> None:
    # The end of retries is no end of the stream: a model that decodes for longer than
    # DEFAULT_TIMEOUT still streams every token.
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        request = pb.GenerateStreamRequest(model=SLOW, query="q")
        started = time.monotonic()
        messages = [m async for m in stub.GenerateStream(request)]
    assert time.monotonic() - started > DEFAULT_TIMEOUT
    assert [t.text for t in messages[-1].texts] == [SLOW_TEXT]
