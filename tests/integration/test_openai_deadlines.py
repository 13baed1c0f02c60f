"""How long an OpenAI completion may decode: like a stream, as long as the gateway's stream
timeout (600 s, the OpenAI SDKs' own timeout), not its unary --default-timeout. Over real gRPC,
against an in-process cell whose model decodes for longer than that default."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc, openai_pb2, openai_pb2_grpc

from gateway.service import GatewayServer
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
MODEL = "/sax/test/slow"
DEFAULT_TIMEOUT = 1.0
WORDS = 12  # 150 ms each: 1.8 s of decoding, over DEFAULT_TIMEOUT


@pytest.fixture
async def gateway(inproc_cell: InprocCell) -> AsyncIterator[GatewayServer]:
    async with running_gateway(
        inproc_cell.settings.sax_root, default_timeout=DEFAULT_TIMEOUT
    ) as server:
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            overrides = {"text": " ".join(["tok"] * WORDS), "delay_ms": "150"}
            await stub.PublishModel(
                pb.PublishModelRequest(
                    model=MODEL,
                    model_path=TEST_LM,
                    checkpoint="None",
                    replicas=1,
                    overrides=overrides,
                )
            )
            await stub.WaitForReady(pb.WaitForReadyRequest(model=MODEL), timeout=10)
        yield server


def _completion(prompt: str) -> openai_pb2.CreateCompletionRequest:
    body = json.dumps({"model": MODEL, "prompt": prompt}).encode()
    return openai_pb2.CreateCompletionRequest(
        body=HttpBody(content_type="application/json", data=body)
    )


async def test_a_completion_decodes_past_the_unary_default_timeout(
    gateway: GatewayServer,
) -> None:
    # An SDK sends no deadline. A non-streamed completion cut at the unary default would be
    # a 504, which the SDKs retry twice: three times the decoding, and still a failure.
    async with aio_channel(gateway.address) as channel:
        stub = openai_pb2_grpc.OpenAIGatewayStub(channel)
        [reply] = [m async for m in stub.CreateCompletion(_completion("q"))]
        choice = json.loads(reply.data)["choices"][0]
        assert (choice["text"], choice["finish_reason"]) == (" ".join(["tok"] * WORDS), "stop")
        # The caller's own deadline still bounds it.
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            _ = [m async for m in stub.CreateCompletion(_completion("q"), timeout=0.5)]
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
