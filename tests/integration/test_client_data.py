"""Data calls of the Sax client against the embedded cell: every family, options, routing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import lm_pb2

from gateway.client import (
    Box,
    CallOptions,
    Client,
    ClientSettings,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    StreamItem,
    UnavailableError,
)
from gateway.client._channels import Backend, close_channel
from tests._approx import approx
from tests.integration._cell_fixtures import stand_in_server
from tests.integration._client_fixtures import (
    CELL,
    TEST_AUDIO,
    TEST_CUSTOM,
    TEST_VISION,
    RunningCell,
    generate_load,
    publish_ready,
)

T = CallOptions(timeout=10)


async def test_lm_generate_echoes_and_honours_extra_inputs(client: Client, lm: str) -> None:
    assert await client.lm_generate(lm, "hello big world", T) == [("hello big world", approx(-0.3))]
    capped = CallOptions(timeout=10, extra_inputs={"per_example_max_decode_steps": 1})
    assert await client.lm_generate(lm, "hello big world", capped) == [("hello", approx(-0.1))]


async def test_lm_generate_stream_yields_sax_items(client: Client) -> None:
    model_id = await publish_ready(client, "two", overrides={"num_samples": "2"})
    responses = [r async for r in client.lm_generate_stream(model_id, "a b", T)]
    assert responses == [
        [StreamItem("a", 0, [approx(-0.1)]), StreamItem("a", 0, [approx(-1.1)])],
        # Per-step scores, as upstream's decoder sends them.
        [StreamItem(" b", 1, [approx(-0.1)]), StreamItem(" b", 1, [approx(-0.1)])],
    ]


async def test_lm_generate_stream_close_cancels_server_side(
    client: Client, cell: RunningCell
) -> None:
    model_id = await publish_ready(client, "slow", overrides={"delay_ms": "50", "length": "200"})
    stream = client.lm_generate_stream(model_id, "tick tock", T)
    first = await anext(stream)
    assert first[0].text == "tick"
    await stream.aclose()
    for _ in range(100):
        if any(c.model_key == model_id for c in cell.cancellations):
            break
        await asyncio.sleep(0.02)
    cancelled = [c for c in cell.cancellations if c.model_key == model_id]
    assert len(cancelled) == 1
    assert cancelled[0].tokens_sent < 10


async def test_lm_generate_stream_task_cancellation_cancels_server_side(
    client: Client, cell: RunningCell
) -> None:
    model_id = await publish_ready(client, "slow2", overrides={"delay_ms": "50", "length": "200"})
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in client.lm_generate_stream(model_id, "x", T):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(100):
        if any(c.model_key == model_id for c in cell.cancellations):
            break
        await asyncio.sleep(0.02)
    assert [c.model_key for c in cell.cancellations] == [model_id]


async def test_close_ends_streams_in_flight_as_unavailable_and_refuses_new_calls(
    client: Client,
) -> None:
    # What a stopping gateway relies on to end its streams with a last message (a stream cut
    # by the server's grace period would end as if it were complete).
    model_id = await publish_ready(client, "closing", overrides={"delay_ms": "50", "length": "200"})
    stream = client.lm_generate_stream(model_id, "tick tock", T)
    assert (await anext(stream))[0].text == "tick"
    await client.close()
    closed = "the Sax client was closed during the call: its owner is stopping"
    with pytest.raises(UnavailableError, match=f"^{closed}$"):
        await anext(stream)
    with pytest.raises(UnavailableError, match=f"^{closed}$"):
        await client.lm_generate(model_id, "x", T)
    assert client.num_channels == 0


async def test_lm_score_embed_gradient(client: Client, lm: str) -> None:
    assert await client.lm_score(lm, "prefix", ["one", "one two"], T) == [
        approx(-0.1),
        approx(-0.2),
    ]
    embedding = await client.lm_embed(lm, "text", T)
    assert len(embedding) == 8
    assert embedding == await client.lm_embed(lm, "text", T)
    scores, gradients = await client.lm_gradient(lm, "p", "s", T)
    assert scores == [approx(-0.1)]
    assert set(gradients) == {"embedding"}
    assert len(gradients["embedding"]) == 8


async def test_vision_family(client: Client) -> None:
    model_id = await publish_ready(client, "vision", TEST_VISION, replicas=1)
    labels = await client.vm_classify(model_id, b"image", T)
    assert len(labels) == 3
    assert all(isinstance(label, str) and 0 <= score <= 1 for label, score in labels)
    ((image, score),) = await client.vm_text_to_image(model_id, "a cat", T)
    assert image.startswith(b"\x89PNG")
    assert score == -0.5
    assert len(await client.vm_embed(model_id, b"image", T)) == 8
    boxes = await client.vm_detect(model_id, b"image", ["cat", "dog"], T)
    assert [b.text for b in boxes] == ["cat", "dog"]
    assert all(isinstance(b, Box) and 0 <= b.cx <= 1 for b in boxes)
    ((caption, _),) = await client.vm_image_to_text(model_id, b"image", "look:", T)
    assert caption.startswith("look: a picture of a ")
    ((made, score),) = await client.vm_image_to_image(model_id, b"image", T)
    assert made.startswith(b"\x89PNG") and made != image and score == -0.5
    ((both, _),) = await client.vm_text_and_image_to_image(model_id, "a cat", b"image", T)
    assert both.startswith(b"\x89PNG") and both not in (image, made)
    frames = [b"image", b"other"]
    ((told, _),) = await client.vm_video_to_text(model_id, frames, "look:", T)
    assert told == f"{caption}, 2 frame(s)"


async def test_audio_and_custom(client: Client) -> None:
    audio_id = await publish_ready(client, "audio", TEST_AUDIO, replicas=1)
    ((text, _),) = await client.am_recognize(audio_id, b"\0" * 32000, T)
    assert text.startswith("1.00 seconds of audio: ")
    custom_id = await publish_ready(client, "custom", TEST_CUSTOM, replicas=1)
    assert await client.custom(custom_id, b"\x01\x02", "echo", T) == b"\x01\x02"
    with pytest.raises(InvalidArgumentError, match="does not support any_method"):
        await client.custom(custom_id, b"\x01\x02", "any_method", T)


async def test_extra_strings_and_tensors_reach_the_server(client: Client, lm: str) -> None:
    options = CallOptions(
        timeout=10,
        extra_inputs={"temperature": 0.5},
        extra_strings={"stop": "x"},
        extra_tensors={"bias": [0.1, 0.2]},
    )
    assert await client.lm_generate(lm, "ok", options) == [("ok", approx(-0.1))]
    # Keys the model does not declare are refused by the model server, not retried elsewhere.
    for undeclared in (
        CallOptions(timeout=10, extra_strings={"note": "x"}),
        CallOptions(timeout=10, extra_tensors={"soft_prompt": [0.1, 0.2]}),
    ):
        with pytest.raises(InvalidArgumentError, match=r"is not an extra input of lm\.generate"):
            await client.lm_generate(lm, "ok", undeclared)


async def test_timeout_becomes_deadline(client: Client) -> None:
    model_id = await publish_ready(client, "slowgen", replicas=1, overrides={"delay_ms": "500"})
    with pytest.raises(DeadlineExceededError):
        await client.lm_generate(model_id, "a b c", CallOptions(timeout=0.2))


async def test_steady_state_data_calls_make_no_admin_rpcs(client: Client, lm: str) -> None:
    # Warm up until both replicas are in use: the watch may deliver the second address a
    # moment after WaitForReady returns, and steady state starts once it has.
    for _ in range(100):
        await client.lm_generate(lm, "warm", T)
        if client.num_channels == 2:
            break
        await asyncio.sleep(0.02)
    before, channels = client.admin_rpcs, client.num_channels
    for _ in range(50):
        await client.lm_generate(lm, "x", T)
    _ = [i async for i in client.lm_generate_stream(lm, "y z", T)]
    await client.lm_score(lm, "p", ["s"], T)
    assert client.admin_rpcs == before
    assert client.num_channels == channels == 2


async def test_calls_spread_over_both_replicas(client: Client, lm: str) -> None:
    for _ in range(4):
        await client.lm_generate(lm, "x", T)
    # A channel is made when a replica is first picked: two channels, both replicas used.
    assert client.num_channels == 2


async def test_failover_when_one_replica_stops_mid_load(
    client: Client, cell: RunningCell, lm: str
) -> None:
    errors: list[BaseException] = []
    workers = [asyncio.create_task(generate_load(client, lm, 40, errors)) for _ in range(4)]
    await asyncio.sleep(0.05)
    await cell.model_servers[1].stop(grace=0)
    done = await asyncio.gather(*workers)
    assert errors == []
    assert sum(done) == 160

    # The admin drops the stopped server; the watch follows without any data-call admin RPC.
    async for addresses in client.watch_addresses(lm):
        if addresses == [cell.model_servers[0].address]:
            break


async def test_a_request_grpc_cannot_serialize_fails_where_it_is_made(
    cell: RunningCell, lm: str
) -> None:
    """grpc.aio catches a stub's serializer failing (a MemoryError, out of memory), logs it and
    sends an empty request: the model server answered it NOT_FOUND, which the router retried
    until the call's deadline. Now the serializer's error is raised in the caller and nothing
    is sent. (Something not a message is what refuses to serialize without exhausting this
    test's memory.)"""
    backend = Backend(cell.model_servers[0].address)
    try:
        wrong = lm.encode()
        with pytest.raises(TypeError, match="SerializeToString"):
            await backend.lm.Generate(wrong, timeout=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="SerializeToString"):
            backend.lm.GenerateStream(wrong, timeout=5)  # type: ignore[arg-type]
        reply = await backend.lm.Generate(lm_pb2.GenerateRequest(model_key=lm, text="hi"))
        assert [d.text for d in reply.texts] == ["hi"]
    finally:
        await close_channel(backend.channel)


async def test_unpublished_model_is_not_found(client: Client, lm: str) -> None:
    with pytest.raises(NotFoundError):
        await client.lm_generate(f"{CELL}/missing", "x", T)
    await client.unpublish(lm)
    with pytest.raises(NotFoundError):
        for _ in range(100):  # until the watch reports the unpublish
            await client.lm_generate(lm, "x", T)
            await asyncio.sleep(0.02)


async def test_watch_addresses_yields_the_current_set(
    client: Client, cell: RunningCell, lm: str
) -> None:
    watch = client.watch_addresses(lm)
    assert await anext(watch) == sorted(s.address for s in cell.model_servers)
    await watch.aclose()


async def test_fail_fast_without_replicas_fails_at_once(cell: RunningCell) -> None:
    settings = ClientSettings(sax_root=cell.sax_root, fail_fast=True)
    async with Client(settings) as client:
        await client.publish(f"{CELL}/idle", "sax_gateway.testing.TestLM", "None", 0)
        with pytest.raises(UnavailableError):
            await client.lm_generate(f"{CELL}/idle", "x", CallOptions(timeout=10))


async def test_without_fail_fast_waits_for_a_replica(cell: RunningCell, client: Client) -> None:
    model_id = f"{CELL}/later"
    await client.publish(model_id, "sax_gateway.testing.TestLM", "None", 0)
    call = asyncio.create_task(client.lm_generate(model_id, "waited", CallOptions(timeout=15)))
    await asyncio.sleep(0.3)
    assert not call.done()
    await client.update(model_id, num_replicas=1)
    assert await call == [("waited", approx(-0.1))]


async def test_waiting_for_a_replica_respects_the_deadline(client: Client) -> None:
    model_id = f"{CELL}/never-served"
    await client.publish(model_id, "sax_gateway.testing.TestLM", "None", 0)
    with pytest.raises(DeadlineExceededError):
        await client.lm_generate(model_id, "x", CallOptions(timeout=0.3))


class _Wrong(grpc.GenericRpcHandler):
    """A model server whose replies are wrong: Generate's text, and GenerateStream's second
    message's, are not UTF-8 (a proto3 string must be), so they do not parse; Score answers
    three log-probabilities whatever it is sent."""

    _TEXT = b"\n\x06\n\x04caf\xc3"  # GenerateResponse{texts: [{text: b"caf\xc3"}]}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def generate(request: bytes, context: object) -> bytes:
            return self._TEXT

        async def stream(request: bytes, context: object) -> AsyncIterator[bytes]:
            yield b"\n\x04\n\x02ok"  # GenerateStreamResponse{items: [{text: "ok"}]}
            yield self._TEXT

        async def score(request: bytes, context: object) -> bytes:
            return lm_pb2.ScoreResponse(logp=[-1.0, -2.0, -3.0]).SerializeToString()

        async def embed(request: bytes, context: object) -> bytes:
            return lm_pb2.EmbedResponse(embedding=[0.5] * 2000).SerializeToString()

        method = handler_call_details.method.rpartition("/")[2]
        if method == "GenerateStream":
            return grpc.unary_stream_rpc_method_handler(stream)
        answer = {"Score": score, "Embed": embed}.get(method, generate)
        return grpc.unary_unary_rpc_method_handler(answer)


async def test_a_reply_that_does_not_parse_or_does_not_fit_the_request_fails_internal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc.aio logged 'Exception deserializing message!' with a traceback and returned None,
    # on which the gateway failed AttributeError: a second traceback, and a 500 'internal
    # error in sax-gateway' that blamed the gateway for its model server's reply.
    async with stand_in_server(lambda s: s.add_generic_rpc_handlers((_Wrong(),))) as address:
        settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=address)
        async with Client(settings) as client:
            with pytest.raises(InternalError) as unary:
                await client.lm_generate(f"{CELL}/lm", "hi", T)
            with pytest.raises(InternalError) as stream:
                async for item in client.lm_generate_stream(f"{CELL}/lm", "hi", T):
                    assert item == [StreamItem(text="ok", prefix_len=0, scores=[])]
            # Passed on, a caller pairing them with its suffixes paired them wrong.
            with pytest.raises(InternalError) as score:
                await client.lm_score(f"{CELL}/lm", "a", ["b"], T)
        # A reply over a gateway's message limit (`max_reply_bytes`) cannot be passed on: it
        # was read, parsed and copied all the same (200 MB: 10 s, other calls stalled 5 s,
        # three at once the watchdog's SIGKILL), then refused; now it is refused unread.
        limited = ClientSettings(sax_root=str(tmp_path), proxy_addr=address, max_reply_bytes=9999)
        async with Client(limited) as client:
            assert await client.lm_score(f"{CELL}/lm", "a", ["b", "c", "d"], T) == [-1, -2, -3]
            with pytest.raises(InvalidArgumentError) as embed:
                await client.lm_embed(f"{CELL}/lm", "a", T)
            # A request over the model server's receive limit (upstream's, as this stand-in,
            # is gRPC's default, 4 MiB) was said as a reply over the gateway's.
            with pytest.raises(InvalidArgumentError) as request:
                await client.lm_generate(f"{CELL}/lm", "q" * (5 << 20), T)
    why = f"the model server of {CELL}/lm at {address} answered with a reply that does not parse"
    assert unary.value.message == (
        f"{why}: Error parsing message with type 'sax.server.lm.GenerateResponse': String field "
        "had bad UTF-8"
    )
    assert stream.value.message == (
        f"{why}: Error parsing message with type 'sax.server.lm.GenerateStreamResponse': "
        "String field had bad UTF-8"
    )
    assert score.value.message == f"{CELL}/lm answered 3 log-probabilities for 1 suffix(es)"
    assert embed.value.message == (
        "the reply would be 16003 bytes, over this gateway's limit of 9999 bytes: ask the model "
        "for less (fewer or shorter samples, fewer or smaller outputs)"
    )
    # The query, with the model key and the fields' tags and lengths.
    assert request.value.message == (
        f"the request is {(5 << 20) + 19} bytes, over the limit of 4194304 bytes of the model "
        f"servers of {CELL}/lm: send less (smaller or fewer inputs)"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_proxy_addr_sends_data_calls_to_one_address(
    cell: RunningCell, client: Client, lm: str
) -> None:
    proxy = cell.model_servers[0].address
    settings = ClientSettings(sax_root=cell.sax_root, proxy_addr=proxy)
    async with Client(settings) as direct:
        assert await direct.lm_generate(lm, "direct", T) == [("direct", approx(-0.1))]
        assert direct.admin_rpcs == 0


class _Failing(grpc.GenericRpcHandler):
    """A model server that fails every call INTERNAL "boom", as a crashing server or a proxy
    before it does, without Sax's wording (no Go code name at the end); GenerateStream
    fails so after its first message."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def generate(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> bytes:
            await context.abort(grpc.StatusCode.INTERNAL, "boom")

        async def stream(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            yield b"\n\x04\n\x02ok"  # GenerateStreamResponse{items: [{text: "ok"}]}
            await context.abort(grpc.StatusCode.INTERNAL, "boom")

        if handler_call_details.method.endswith("/GenerateStream"):
            return grpc.unary_stream_rpc_method_handler(stream)
        return grpc.unary_unary_rpc_method_handler(generate)


async def test_a_model_servers_failure_without_sax_wording_names_the_replica_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A replica's INTERNAL "boom" reached the caller as "boom" alone: neither the caller nor
    # the operator could tell which replica failed, and the gateway logged nothing.
    async with stand_in_server(lambda s: s.add_generic_rpc_handlers((_Failing(),))) as address:
        settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=address)
        async with Client(settings) as client:
            with caplog.at_level(logging.WARNING, logger="gateway.client._router"):
                with pytest.raises(InternalError) as unary:
                    await client.lm_generate(f"{CELL}/lm", "hi", T)
                with pytest.raises(InternalError) as stream:
                    async for item in client.lm_generate_stream(f"{CELL}/lm", "hi", T):
                        assert item == [StreamItem(text="ok", prefix_len=0, scores=[])]
                for _ in range(3):  # the same failure again: logged once (FailureLog)
                    with pytest.raises(InternalError):
                        await client.lm_generate(f"{CELL}/lm", "hi", T)
    said = f"the model server of {CELL}/lm at {address} failed the call: boom"
    assert (unary.value.message, stream.value.message) == (said, said)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            f"the model server of {CELL}/lm at {address} failed a call with INTERNAL: boom",
        ),
    ]
