"""clients/python's AsyncClient through Envoy's gRPC port: the same calls, deadlines and
exceptions as the synchronous Client, awaited; streams with ``async for``; calls in flight
together on one event loop."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway_client import (
    AlreadyExistsError,
    AsyncClient,
    BadRequestError,
    CancelledError,
    DeadlineExceededError,
    NotFoundError,
    ServerError,
)

from gateway.launch.stack import Stack
from tests._approx import approx
from tests.e2e._access_log import access_log_line
from tests.e2e._published import TEST_CUSTOM, TEST_LM, published

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(stack.grpc_address, timeout=30) as client:
        yield client


async def _published(client: AsyncClient, model: str, **overrides: str) -> str:
    await client.publish(model, TEST_LM, "None", overrides=overrides)
    assert await client.wait_for_ready(model) == 1
    return model


async def test_publish_generate_score_unpublish(client: AsyncClient) -> None:
    model = await _published(client, "/sax/test/aio-client", text="hello from asyncio")
    try:
        with pytest.raises(AlreadyExistsError):
            await client.publish(model, TEST_LM, "None")
        assert await client.generate(model, "q") == [("hello from asyncio", approx(-0.3))]
        capped = await client.generate(model, "q", extra={"per_example_max_decode_steps": 2})
        assert capped == [("hello from", approx(-0.2))]
        assert await client.score(model, "a", ["b c", "d"]) == [approx(-0.2), approx(-0.1)]
    finally:
        await client.unpublish(model)
    with pytest.raises(NotFoundError):
        await client.generate(model, "q")
    with pytest.raises(NotFoundError) as raised:
        await client.unpublish(model, metadata=[("x-request-id", "aio-call-9")])
    assert raised.value.request_id == "aio-call-9"


async def test_generate_stream_with_async_for(client: AsyncClient) -> None:
    model = await _published(client, "/sax/test/aio-stream", text="one two three")
    try:
        items = [item async for item in client.generate_stream(model, "q")]
    finally:
        await client.unpublish(model)
    assert [d.text for item in items for d in item.deltas] == ["one", " two", " three"]
    assert items[-1].done
    assert [t.text for t in items[-1].texts] == ["one two three"]


async def test_stream_failure_in_band_raises(client: AsyncClient) -> None:
    overrides = {"text": "a b c d", "fail_after_tokens": "2", "fail_code": "INTERNAL"}
    model = await _published(client, "/sax/test/aio-stream-fails", **overrides)
    seen = []
    try:
        with pytest.raises(ServerError) as raised:
            async for item in client.generate_stream(model, "q"):
                seen += [d.text for d in item.deltas]
    finally:
        await client.unpublish(model)
    assert seen == ["a", " b"]
    assert raised.value.code.name == "INTERNAL"
    # Raised from the call's own status, read after the in-band error: the call was not
    # cancelled before it (Envoy logged such streams CANCELLED about half the time).
    assert isinstance(raised.value.__cause__, grpc.RpcError)


async def test_a_stream_of_an_unknown_model_raises_at_its_first_step(client: AsyncClient) -> None:
    request = pb.WatchAddressesRequest(model="/sax/test/aio-no-such-model")
    watch = client.stream("WatchAddresses", request)
    with pytest.raises(NotFoundError):
        await anext(watch)


async def test_the_wrong_kind_of_call_names_the_right_one(client: AsyncClient) -> None:
    with pytest.raises(TypeError, match=r"AsyncClient.stream\('WatchAddresses'"):
        await client.call("WatchAddresses", pb.WatchAddressesRequest())
    with pytest.raises(TypeError, match=r"AsyncClient.call\('Generate'"):
        client.stream("Generate", pb.GenerateRequest())
    # A name the service lacks: the stub's bare AttributeError before.
    with pytest.raises(ValueError, match=r"^'Nope' is not an RPC of saxgateway.v1.SaxGateway"):
        await client.call("Nope", pb.GenerateRequest())
    with pytest.raises(ValueError, match=r"it has .*WatchAddresses"):
        client.stream("Nope", pb.GenerateRequest())


async def test_bad_request_carries_field_violations(client: AsyncClient) -> None:
    with pytest.raises(BadRequestError) as raised:
        await client.generate("lm2b", "q")
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert [v.field for v in raised.value.field_violations] == ["model"]


async def test_calls_share_the_loop_and_keep_their_own_deadlines(client: AsyncClient) -> None:
    # A slow call in flight does not hold the loop: a quick one on the same client answers
    # while it waits, and each keeps its own deadline. The slow one takes 2 s (two tokens of
    # 1 s; 1 s before), so that a loaded host's quick call (milliseconds) ends well before.
    model = await _published(client, "/sax/test/aio-slow", text="a b", delay_ms="1000")
    quick = await _published(client, "/sax/test/aio-quick", text="fast")
    try:
        slow = asyncio.create_task(client.generate(model, "q"))
        doomed = asyncio.create_task(client.generate(model, "q", timeout=0.3))
        assert await client.generate(quick, "q") == [("fast", approx(-0.1))]
        assert not slow.done()
        with pytest.raises(DeadlineExceededError):
            await doomed
        assert await slow == [("a b", approx(-0.2))]
    finally:
        await client.unpublish(model)
        await client.unpublish(quick)


async def test_an_endless_timeout_is_no_deadline_of_the_client(stack: Stack) -> None:
    # grpc.aio took a timeout of infinity for one already past: DEADLINE_EXCEEDED at once.
    # Channel options reach its channel (here grpc's user agent, which Envoy logs).
    agent = [("grpc.primary_user_agent", "aio-app/2")]
    async with AsyncClient(stack.grpc_address, timeout=math.inf, options=agent) as endless:
        tagged = [("x-request-id", f"aio-endless-{uuid.uuid4()}")]
        info = await endless.call("GetInfo", pb.GetInfoRequest(), metadata=tagged)
        assert info.message.startswith("HTTP")
        with pytest.raises(ValueError, match=r"^timeout must be a number of seconds, not nan$"):
            await endless.call("GetInfo", pb.GetInfoRequest(), timeout=math.nan)
    user_agent = access_log_line(stack, tagged[0][1])["user_agent"]
    assert isinstance(user_agent, str) and user_agent.startswith("aio-app/2 ")


async def test_metadata_keys_are_header_names_of_any_case(stack: Stack) -> None:
    # grpc.aio failed such a call with ExecuteBatchError, no SaxGatewayError at all.
    async with AsyncClient(stack.grpc_address, metadata=[("X-Request-Id", "aio-case-2")]) as c:
        with pytest.raises(NotFoundError) as raised:
            await c.generate("/sax/test/no-such-model", "q")
    assert raised.value.request_id == "aio-case-2"


async def test_a_reply_over_grpcs_default_limit_is_received(
    stack: Stack, client: AsyncClient
) -> None:
    # 5 MiB: over grpc's default receive limit (4 MiB), under the gateway's (32 MiB).
    big = b"a" * (5 << 20)
    with published(stack, "/sax/test/aio-client-custom", TEST_CUSTOM) as model:
        request = pb.CustomRequest(model=model, method_name="echo", request=big)
        reply = await client.call("Custom", request)
    assert reply.response == big


async def test_calls_in_flight_when_the_client_closes_raise_its_cancelled_error(
    stack: Stack,
) -> None:
    # grpc.aio ends them with asyncio.CancelledError, which `except SaxGatewayError` (and
    # `except Exception`) missed, though the task was never cancelled; the sync client's
    # raise CancelledError ("Channel closed!").
    model = "/sax/test/aio-closed"
    async with AsyncClient(stack.grpc_address, timeout=30) as admin:
        await _published(admin, model, text="a b c d e f", delay_ms="300")
        try:
            client = AsyncClient(stack.grpc_address, timeout=30)
            unary = asyncio.ensure_future(client.generate(model, "q"))

            async def first_then_rest() -> list[object]:
                stream = client.generate_stream(model, "q")
                return [await anext(stream), *[item async for item in stream]]

            streamed = asyncio.ensure_future(first_then_rest())
            await asyncio.sleep(0.5)  # both under way: the stream has sent its first token
            await client.close()
            for call in (unary, streamed):
                with pytest.raises(CancelledError) as raised:
                    await call
                assert raised.value.code == grpc.StatusCode.CANCELLED
                assert raised.value.message == "Channel closed!"
            assert not unary.cancelled() and not streamed.cancelled()
        finally:
            await admin.unpublish(model)
    # Calls made after the close: grpc.aio's UsageError ("Channel is closed.") before.
    with pytest.raises(CancelledError, match="Channel closed!"):
        await client.generate(model, "q")
    with pytest.raises(CancelledError, match="Channel closed!"):
        await anext(client.generate_stream(model, "q"))
