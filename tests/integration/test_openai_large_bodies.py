"""A large OpenAI request is read, checked and rendered off the gateway's event loop: its
other calls go on meanwhile. Over real gRPC, against an in-process cell and gateway."""

from __future__ import annotations

import asyncio
import json
from types import MappingProxyType

from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import openai_pb2, openai_pb2_grpc

from gateway.modelconfig import ModelConfig
from tests._grpc import aio_channel
from tests._wait import until
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway
from tests.integration.test_gateway_telemetry import sample

MODEL = "/sax/test/chat"


async def test_other_calls_go_on_while_a_large_chat_is_read(inproc_cell: InprocCell) -> None:
    # 600,000 messages (17 MB) of a chat were parsed, checked and rendered on the event loop:
    # 32 MiB of them held every other call of the process for 3.5 s.
    models = MappingProxyType({MODEL: ModelConfig(model_id=MODEL, chat_template_name="chatml")})
    messages = [{"role": "user", "content": ""}] * 600_000
    body = json.dumps({"model": MODEL, "max_tokens": 1, "messages": messages}).encode()
    large = openai_pb2.CreateChatCompletionRequest(
        body=HttpBody(content_type="application/json", data=body)
    )
    root = inproc_cell.settings.sax_root
    async with (
        running_gateway(root, models=models, health_interval=60) as gateway,
        aio_channel(gateway.address) as channel,
    ):
        stub = openai_pb2_grpc.OpenAIGatewayStub(channel)

        async def chat() -> list[object]:
            return [m async for m in stub.CreateChatCompletion(large, timeout=60)]

        call = asyncio.ensure_future(chat())
        method = "CreateChatCompletion"
        await until(
            "the gateway reads the chat",
            lambda: sample(gateway, "saxgw_streams_open", grpc_method=method) == 1,
        )
        listed = await stub.ListOpenAIModels(openai_pb2.ListOpenAIModelsRequest(), timeout=30)
        assert json.loads(listed.data)["object"] == "list"
        assert not call.done()  # still being read, while the listing was served
        call.cancel()
