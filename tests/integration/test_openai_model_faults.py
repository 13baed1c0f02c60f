"""OpenAI calls answered wrongly by a model server: a stream with no sample, embeddings with
no dimensions or with sizes that differ. Each is the model's failure (INTERNAL), as the same
answer unstreamed already was, not a 200 that passes it off as an answer. Over real gRPC: the
model is published on an in-process cell, and its data calls go to a stand-in server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc, openai_pb2, openai_pb2_grpc
from saxml.protobuf import lm_pb2

from gateway.client import ClientSettings
from gateway.service import GatewayServer
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell, stand_in_server
from tests.integration._gateway_fixtures import running_gateway

MODEL = "/sax/test/wrong"


class _Wrong(grpc.GenericRpcHandler):
    """GenerateStream ends OK with no message; Embed answers a vector one shorter than its
    text (none for a text of one character)."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def stream(request: bytes, context: object) -> AsyncIterator[bytes]:
            return
            yield b""

        async def embed(request: bytes, context: object) -> bytes:
            text = lm_pb2.EmbedRequest.FromString(request).text
            return lm_pb2.EmbedResponse(embedding=[0.5] * (len(text) - 1)).SerializeToString()

        if handler_call_details.method.endswith("/GenerateStream"):
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(embed)


@pytest.fixture
async def gateway(inproc_cell: InprocCell) -> AsyncIterator[GatewayServer]:
    sax_root = inproc_cell.settings.sax_root
    async with running_gateway(sax_root) as publisher, aio_channel(publisher.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await stub.PublishModel(
            pb.PublishModelRequest(
                model=MODEL, model_path="sax_gateway.testing.TestLM", checkpoint="None", replicas=1
            )
        )
        await stub.WaitForReady(pb.WaitForReadyRequest(model=MODEL), timeout=10)
    async with (
        stand_in_server(lambda s: s.add_generic_rpc_handlers((_Wrong(),))) as wrong,
        running_gateway(sax_root, ClientSettings(sax_root=sax_root, proxy_addr=wrong)) as server,
    ):
        yield server


def _body(fields: dict[str, Any]) -> HttpBody:
    return HttpBody(content_type="application/json", data=json.dumps(fields).encode())


async def test_a_stream_with_no_sample_is_the_models_failure(gateway: GatewayServer) -> None:
    # It was a 200: one choice of "" that finished "stop", then [DONE].
    async with aio_channel(gateway.address) as channel:
        stub = openai_pb2_grpc.OpenAIGatewayStub(channel)
        request = openai_pb2.CreateCompletionRequest(
            body=_body({"model": MODEL, "prompt": "q", "stream": True})
        )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            _ = [m async for m in stub.CreateCompletion(request)]
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details() == f"{MODEL} answered the prompt with no sample"


@pytest.mark.parametrize(
    ("inputs", "said"),
    [
        (["x", "abc"], f"{MODEL} embedded input 0 into no dimensions"),
        (["ab", "abcd"], f"{MODEL} embedded input 0 into 1 dimensions and input 1 into 3"),
    ],
)
async def test_embeddings_with_no_dimensions_or_sizes_that_differ_are_the_models_failure(
    gateway: GatewayServer, inputs: list[str], said: str
) -> None:
    # Each was a 200: "embedding": [] for an input, or vectors of 1 and 3 dimensions in one
    # list; with "dimensions", a 400 that blamed the caller.
    async with aio_channel(gateway.address) as channel:
        stub = openai_pb2_grpc.OpenAIGatewayStub(channel)
        request = openai_pb2.CreateEmbeddingRequest(body=_body({"model": MODEL, "input": inputs}))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.CreateEmbedding(request)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details() == said
