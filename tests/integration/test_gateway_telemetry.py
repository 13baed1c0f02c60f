"""The gateway's metrics and cost reporting over real gRPC, in front of an in-process cell:
what a few calls leave in the Prometheus registry, and the cost header and trailer."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client import generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cell.models.media import VISION_PATH
from gateway.client import ClientSettings
from gateway.config import AccessSettings, GatewaySettings, ModelLimit, TelemetrySettings
from gateway.edge import IDENTITY_HEADER
from gateway.launch.processes import free_port
from gateway.modelconfig import ModelConfig
from gateway.service import GatewayServer, _metricstore
from gateway.service._tracing import EXPORTER_LOGGER, SHUTDOWN_TIMEOUT_S
from tests._grpc import aio_channel
from tests._otlp import Receiver, attributes
from tests._wait import until
from tests.e2e._openai import tokenizer, write_config
from tests.integration._cell_fixtures import CELL, InprocCell, admin_stub, eventually, publish
from tests.integration._gateway_fixtures import running_gateway

COST = "x-sax-query-cost-ms"


@pytest.fixture
async def gateway(inproc_cell: InprocCell) -> AsyncIterator[GatewayServer]:
    async with running_gateway(inproc_cell.settings.sax_root, health_interval=60) as server:
        yield server


def sample(server: GatewayServer, name: str, **labels: str) -> float:
    """The value of one sample of the gateway's registry (0 if it does not exist)."""
    assert server.metrics is not None
    server.metrics.flush()  # the server writes calls' counts out once a second
    value = server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_calls_are_counted_timed_and_costed(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        model = await publish(admin, "echo", overrides={"text": "one two three"})
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        call = stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
        reply = await call
        assert COST not in dict(await call.initial_metadata())  # a trailer by default
        costs = [int(dict(await call.trailing_metadata())[COST])]
        stream = stub.GenerateStream(pb.GenerateStreamRequest(model=model, query="hi"), timeout=10)
        messages = [m async for m in stream]
        costs.append(int(dict(await stream.trailing_metadata())[COST]))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Generate(pb.GenerateRequest(model="/sax/test/nope", query="x"), timeout=10)

    assert reply.texts[0].text == "one two three"
    assert messages[-1].done
    assert all(c >= 1 for c in costs)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    generate = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": model}
    stream_op = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_request_model": model}
    duration = "gen_ai_server_request_duration_seconds_count"
    # A failed call's status leaves at abort(), before the telemetry interceptor's `finally`
    # records it: on a loaded machine the caller can see the error first.
    unknown = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": "unknown"}

    async def failure_recorded() -> bool:
        return sample(gateway, duration, **unknown, error_type="NOT_FOUND") > 0

    await eventually(failure_recorded)
    assert sample(gateway, duration, **generate, error_type="") == 1
    assert sample(gateway, duration, **stream_op, error_type="") == 1
    # An unknown model name is counted, but never becomes a label of its own.
    assert sample(gateway, duration, **unknown, error_type="NOT_FOUND") == 1
    assert gateway.metrics is not None
    assert "/sax/test/nope" not in generate_latest(gateway.metrics.registry).decode()

    assert sample(gateway, "gen_ai_server_time_to_first_token_seconds_count", **stream_op) == 1
    # Three chunks: one time-between-chunks observation for the stream.
    assert sample(gateway, "gen_ai_server_time_per_output_token_seconds_count", **stream_op) == 1
    requests = "saxgw_requests_total"
    anonymous = {"client": "anonymous"}  # no authentication configured
    assert sample(gateway, requests, grpc_method="Generate", grpc_code="OK", **anonymous) == 1
    assert (
        sample(gateway, requests, grpc_method="Generate", grpc_code="NOT_FOUND", **anonymous) == 1
    )
    assert sample(gateway, requests, grpc_method="GenerateStream", grpc_code="OK", **anonymous) == 1
    assert sample(gateway, "saxgw_requests_in_flight", grpc_method="Generate") == 0
    assert sample(gateway, "saxgw_streams_open", grpc_method="GenerateStream") == 0

    chars = "saxgw_text_characters_total"
    assert sample(gateway, chars, **generate, direction="input") == len("hello")
    assert sample(gateway, chars, **generate, direction="output") == len("one two three")
    assert sample(gateway, chars, **stream_op, direction="output") == len("one two three")
    cost = "saxgw_query_cost_tpu_milliseconds_total"
    assert sample(gateway, cost, **generate, **anonymous) + sample(
        gateway, cost, **stream_op, **anonymous
    ) == sum(costs)
    # No tokenizer configured for the model: no token counts (characters only, above).
    assert gateway.metrics is not None
    assert (
        "gen_ai_client_token_usage_count{" not in generate_latest(gateway.metrics.registry).decode()
    )
    assert sample(gateway, "saxgw_model_replicas", gen_ai_request_model=model) == 1
    assert sample(gateway, "saxgw_sax_admin_rpcs_total", sax_method="WatchLoc") >= 1


async def test_calls_waiting_for_a_models_slot_show_in_its_queue_gauge(
    inproc_cell: InprocCell,
) -> None:
    # The model runs one call at once here (quotas.model): a stream holds its slot, and the
    # calls behind it wait, counted until they end: cancelled by their client, or past their
    # deadline. Before, only latency and RESOURCE_EXHAUSTED showed a model's queue.
    async with admin_stub(inproc_cell.admin.address) as admin:
        # 100 tokens 0.1 s apart: the stream holds the slot until the test cancels it.
        model = await publish(admin, "queued", overrides={"text": "w " * 100, "delay_ms": "100"})
    limit = AccessSettings(model=ModelLimit(max_in_flight=1, max_queued=4))
    root = inproc_cell.settings.sax_root
    queued = {"gen_ai_request_model": model}
    gauge = "saxgw_model_calls_queued"
    async with (
        running_gateway(root, health_interval=60, access=limit) as gateway,
        aio_channel(gateway.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        held = stub.GenerateStream(pb.GenerateStreamRequest(model=model, query="hi"), timeout=60)
        first = await held.read()  # it runs: the model's one slot is taken
        assert isinstance(first, pb.GenerateStreamResponse) and first.deltas
        assert sample(gateway, gauge, **queued) == 0  # no series: no call has waited
        left = stub.Generate(pb.GenerateRequest(model=model, query="hi"), timeout=60)
        await until("a call waits", lambda: sample(gateway, gauge, **queued) == 1)
        left.cancel()
        await until("the call's client left", lambda: sample(gateway, gauge, **queued) == 0)
        late = stub.Generate(pb.GenerateRequest(model=model, query="hi"), timeout=3)
        await until("a call waits", lambda: sample(gateway, gauge, **queued) == 1)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await late
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "waiting in the model's queue" in (ended.value.details() or "")
        assert sample(gateway, gauge, **queued) == 0
        runs = stub.Generate(pb.GenerateRequest(model=model, query="hi"), timeout=60)
        await until("a call waits", lambda: sample(gateway, gauge, **queued) == 1)
        held.cancel()  # its slot goes to the waiting call, which runs
        await until("the call runs", lambda: sample(gateway, gauge, **queued) == 0)
        assert not runs.done()  # running (100 tokens: 10 s), not failed
        runs.cancel()


async def test_a_stream_waiting_in_its_models_queue_counts_with_its_clients_streams(
    inproc_cell: InprocCell,
) -> None:
    # Its client's stream slot was taken only once the model's slot was: streams queued on a
    # model were counted nowhere, so one address held its 100 streams and as many more
    # queued on each model as its queue took, each for up to the default timeout.
    async with admin_stub(inproc_cell.admin.address) as admin:
        model = await publish(
            admin, "queued-streams", overrides={"text": "w " * 100, "delay_ms": "100"}
        )
    limit = AccessSettings(model=ModelLimit(max_in_flight=1, max_queued=4))
    root = inproc_cell.settings.sax_root
    gauge = "saxgw_model_calls_queued"
    async with (
        running_gateway(root, health_interval=60, access=limit, max_streams_per_client=2) as gw,
        aio_channel(gw.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        request = pb.GenerateStreamRequest(model=model, query="hi")
        running = stub.GenerateStream(request, timeout=60)
        first = await running.read()  # it runs: it holds the model's one slot
        assert isinstance(first, pb.GenerateStreamResponse) and first.deltas
        queued = stub.GenerateStream(request, timeout=60)
        await until("a stream waits", lambda: sample(gw, gauge, gen_ai_request_model=model) == 1)
        third = stub.GenerateStream(request, timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await third.read()
        running.cancel()
        queued.cancel()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "client 127.0.0.1 already has 2 streams or waits open, the limit per client;"
        " close some first"
    )


async def test_calls_no_model_answered_count_no_input_characters(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # The characters in are text sent to models: a call to an unpublished model, or one every
    # replica refused (overloaded), counted its query as if a model had read it.
    async with admin_stub(inproc_cell.admin.address) as admin:
        full = await publish(admin, "full", overrides={"max_in_flight": "0"})
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for model, code in [
            ("/sax/test/nope", grpc.StatusCode.NOT_FOUND),
            (full, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
            assert refused.value.code() == code

    duration = "gen_ai_server_request_duration_seconds_count"
    unknown = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": "unknown"}
    overloaded = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": full}

    async def recorded() -> bool:
        return (
            sample(gateway, duration, **unknown, error_type="NOT_FOUND") > 0
            and sample(gateway, duration, **overloaded, error_type="RESOURCE_EXHAUSTED") > 0
        )

    await eventually(recorded)
    # Not even a series at 0: each was written out for every model and status that had a
    # call, so a model only ever refused (and "unknown") showed characters it never had.
    assert gateway.metrics is not None
    gateway.metrics.flush()
    for labels in (unknown, overloaded):
        for direction in ("input", "output"):
            chars = {**labels, "direction": direction}
            value = gateway.metrics.registry.get_sample_value("saxgw_text_characters_total", chars)
            assert value is None, chars


async def test_a_call_whose_message_grpc_refused_is_no_server_failure(
    inproc_cell: InprocCell,
) -> None:
    # grpc ends a call whose message it cannot take (compressed and inflating past the
    # limit: RESOURCE_EXHAUSTED; corrupt, or flagged compressed with no grpc-encoding:
    # INTERNAL) with its own status, before the gateway reads a message. The gateway's
    # status then cannot be sent, and the call was counted UNKNOWN, a server failure to the
    # dashboard and the error-ratio alert, where the caller and Envoy's access log saw
    # RESOURCE_EXHAUSTED. It is counted nowhere, as the calls grpc fails before any gateway
    # code runs; Envoy's access log has it with its status.
    limit = 64 << 10
    requests = "saxgw_requests_total"
    anonymous = {"client": "anonymous"}
    async with running_gateway(
        inproc_cell.settings.sax_root, health_interval=60, max_receive_bytes=limit
    ) as gateway:
        async with aio_channel(gateway.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            model, query = "/sax/test/nope", "a" * 2 * limit
            gzip = grpc.Compression.Gzip
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await stub.Generate(
                    pb.GenerateRequest(model=model, query=query), timeout=10, compression=gzip
                )
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                request = pb.GenerateStreamRequest(model=model, query=query)
                _ = [m async for m in stub.GenerateStream(request, timeout=10, compression=gzip)]
            for refused in (unary, stream):
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # A call the gateway answers, counted once those before it have been.
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Generate(
                    pb.GenerateRequest(model="/sax/test/nope", query="x"), timeout=10
                )

        async def marked() -> bool:
            labels = {"grpc_method": "Generate", "grpc_code": "NOT_FOUND", **anonymous}
            return sample(gateway, requests, **labels) == 1

        await eventually(marked)
        assert gateway.metrics is not None
        counted = {
            (s.labels["grpc_method"], s.labels["grpc_code"]): s.value
            for metric in gateway.metrics.registry.collect()
            for s in metric.samples
            if s.name == requests and s.value
        }
        assert counted == {("Generate", "NOT_FOUND"): 1}


async def test_a_call_is_counted_under_the_sax_method_its_acl_names(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # gen_ai_operation_name is the Sax method as saxutil spells it, the name a model ACL
    # guards the call by: TextToImage's is vm.generate. It was counted as vm.text_to_image, a
    # name no Sax tool uses, from a table of its own beside the ACLs'.
    async with admin_stub(inproc_cell.admin.address) as admin:
        model = await publish(admin, "vision", model_path=VISION_PATH)
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await stub.TextToImage(pb.TextToImageRequest(model=model, text="a cat"), timeout=10)

    made = {"gen_ai_operation_name": "vm.generate", "gen_ai_request_model": model}
    duration = "gen_ai_server_request_duration_seconds_count"
    assert sample(gateway, duration, **made, error_type="") == 1
    assert sample(gateway, "saxgw_text_characters_total", **made, direction="input") == 5


async def test_a_model_changed_through_the_gateway_keeps_its_replicas(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # An ACL set (or an Update) through the gateway dropped the model's address table and
    # reported it with no replicas: saxgw_model_replicas said 0 for a model that served, and
    # went on saying it until a call of that model came to the same process, and each change
    # counted as an address change that never happened.
    async with admin_stub(inproc_cell.admin.address) as admin:
        model = await publish(admin, "acl-changed")
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
        replicas = {"gen_ai_request_model": model}
        assert sample(gateway, "saxgw_model_replicas", **replicas) == 1
        changes = sample(gateway, "saxgw_address_changes_total", **replicas)
        acl = pb.SetAclRequest(name=model, method="lm.generate", acl="acl/team-a")
        await stub.SetAcl(acl, timeout=10)
        assert sample(gateway, "saxgw_model_replicas", **replicas) == 1
        assert sample(gateway, "saxgw_address_changes_total", **replicas) == changes
        # A change of its replicas shows without waiting for a call of the model: the gateway
        # goes on watching a model it watched before it changed it.
        await stub.UpdateModel(pb.UpdateModelRequest(model=model, replicas=2), timeout=10)

        async def both_serve() -> bool:
            return sample(gateway, "saxgw_model_replicas", **replicas) == 2

        await eventually(both_serve)
        assert sample(gateway, "saxgw_address_changes_total", **replicas) == changes + 1


async def test_with_the_cost_header_on_and_no_metrics_the_cost_is_a_header(
    inproc_cell: InprocCell,
) -> None:
    costly = TelemetrySettings(metrics=False, cost_header=True)
    root = inproc_cell.settings.sax_root
    async with running_gateway(root, health_interval=60, telemetry=costly) as server:
        async with admin_stub(inproc_cell.admin.address) as admin:
            model = await publish(admin, "costly")
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            call = stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
            await call
            assert int(dict(await call.initial_metadata())[COST]) >= 1
            assert COST not in dict(await call.trailing_metadata())
    assert server.metrics is None


async def test_callers_and_tokens_are_counted_and_traced(
    inproc_cell: InprocCell, tmp_path: Path
) -> None:
    """The identity Envoy passes (x-saxgw-client) labels calls, bounded to the clients the
    config names; a model with a tokenizer gets its tokens counted; the span names the caller."""
    spm = write_config(tmp_path).parent / "spm.model"  # a word-level SentencePiece model
    model = f"{CELL}/tokens"
    receiver = Receiver()
    receiver.start()
    settings = GatewaySettings(
        client=ClientSettings(sax_root=inproc_cell.settings.sax_root),
        health_interval=60,
        access=AccessSettings(known_clients=frozenset({"team-a"})),
        models={model: ModelConfig(model_id=model, tokenizer=str(spm))},
        telemetry=TelemetrySettings(otlp_endpoint=receiver.endpoint),
    )
    server = await GatewayServer.start(settings)
    trace_id = secrets.token_bytes(16)
    try:
        async with admin_stub(inproc_cell.admin.address) as admin:
            await publish(admin, "tokens", overrides={"text": "Paris is the capital"})
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            for caller in ("team-a", "team-a", "mallory-from-a-jwt", None):
                metadata = [(IDENTITY_HEADER, caller)] if caller else []
                metadata.append(("traceparent", f"00-{trace_id.hex()}-{'1' * 16}-01"))
                request = pb.GenerateRequest(model=model, query="hello world")
                await stub.Generate(request, metadata=metadata, timeout=10)
            stream = stub.GenerateStream(
                pb.GenerateStreamRequest(model=model, query="hello"),
                metadata=[(IDENTITY_HEADER, "team-a")],
                timeout=10,
            )
            assert [m async for m in stream][-1].done
            team = [(IDENTITY_HEADER, "team-a")]
            await stub.Embed(pb.EmbedRequest(model=model, text="hello"), metadata=team, timeout=10)
            score = pb.ScoreRequest(model=model, prefix="hello", suffix=["world"])
            await stub.Score(score, metadata=team, timeout=10)
        requests = "saxgw_requests_total"
        ok = {"grpc_method": "Generate", "grpc_code": "OK"}
        assert sample(server, requests, **ok, client="team-a") == 2
        # A client id the config does not name (a JWT subject) is "other", never itself.
        assert sample(server, requests, **ok, client="other") == 1
        assert sample(server, requests, **ok, client="anonymous") == 1
        assert server.metrics is not None
        assert "mallory" not in generate_latest(server.metrics.registry).decode()
        cost = "saxgw_query_cost_tpu_milliseconds_total"
        generate = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": model}
        assert sample(server, cost, **generate, client="team-a") >= 2

        # Tokens by the model's tokenizer: "hello world" is 2 words in, "Paris is the
        # capital" 4 words out, per call.
        usage = "gen_ai_client_token_usage"
        team_a = {**generate, "client": "team-a"}
        assert sample(server, f"{usage}_count", **team_a, gen_ai_token_type="input") == 2
        assert sample(server, f"{usage}_sum", **team_a, gen_ai_token_type="input") == 4
        assert sample(server, f"{usage}_sum", **team_a, gen_ai_token_type="output") == 8
        streamed = {**team_a, "gen_ai_operation_name": "lm.generate_stream"}
        assert sample(server, f"{usage}_sum", **streamed, gen_ai_token_type="input") == 1
        assert sample(server, f"{usage}_sum", **streamed, gen_ai_token_type="output") == 4
        # Embeddings and scores read text and write none: their tokens in, and no output
        # sample (an observed 0 pulled every quantile of output tokens down).
        for op, tokens_in in (("lm.embed", 1), ("lm.score", 2)):
            read = {**team_a, "gen_ai_operation_name": op}
            assert sample(server, f"{usage}_sum", **read, gen_ai_token_type="input") == tokens_in
            output = {**read, "gen_ai_token_type": "output"}
            assert server.metrics.registry.get_sample_value(f"{usage}_count", output) is None, op
    finally:
        await server.stop(grace=0)  # flushes the spans
        receiver.stop()
    servers = [s for s in receiver.spans(trace_id) if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    callers = sorted(str(attributes(s).get("enduser.id")) for s in servers)
    assert callers == ["None", "mallory-from-a-jwt", "team-a", "team-a"]


async def test_a_stream_of_a_model_with_a_tokenizer_holds_its_text_once(
    inproc_cell: InprocCell, tmp_path: Path
) -> None:
    """GenerateStream keeps each sample's text for its last message; the telemetry, which
    counts the tokens of a model with a tokenizer, reads that text rather than keeping a
    copy of its own (two copies: a stalled stream of such a model held twice its text)."""
    config = write_config(tmp_path)
    spm = config.parent / "spm.model"
    model = f"{CELL}/kept-once"
    settings = GatewaySettings(
        client=ClientSettings(sax_root=inproc_cell.settings.sax_root),
        health_interval=60,
        models={model: ModelConfig(model_id=model, tokenizer=str(spm))},
    )
    server = await GatewayServer.start(settings)
    word = "w" * (128 << 10)
    try:
        async with admin_stub(inproc_cell.admin.address) as admin:
            await publish(admin, "kept-once", overrides={"delay_ms": "400"})  # echoes
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            query = " ".join([word] * 8)
            stream = stub.GenerateStream(pb.GenerateStreamRequest(model=model, query=query))
            tracemalloc.start()
            try:
                sent = 0
                for _ in range(4):  # then the model takes 400 ms for the next word
                    message = await stream.read()
                    assert isinstance(message, pb.GenerateStreamResponse)
                    sent += len(message.deltas[0].text)
                held = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(True, f"*/gateway/service/{name}") for name in _TEXTS]
                )
            finally:
                tracemalloc.stop()
            while isinstance(message, pb.GenerateStreamResponse) and not message.done:
                message = await stream.read()
            assert isinstance(message, pb.GenerateStreamResponse)
            assert message.texts[0].text == query
        size = sum(stat.size for stat in held.statistics("filename"))
        assert sent < size < 1.5 * sent
        # Its tokens are still counted, from that text (in a thread: it is long).
        tokens = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_token_type": "output"}
        usage = "gen_ai_client_token_usage_sum"

        async def counted() -> bool:
            labels = {**tokens, "gen_ai_request_model": model, "client": "anonymous"}
            return sample(server, usage, **labels) == len(tokenizer(config).encode(query))

        await eventually(counted)
    finally:
        await server.stop(grace=0)


_TEXTS = ("_stream.py", "_usage.py", "_observe.py", "_servicer.py")
"""Where the gateway keeps a stream's text (its deltas' and samples')."""


async def test_an_otlp_endpoint_without_a_scheme_is_plaintext_as_envoys(
    inproc_cell: InprocCell,
) -> None:
    # --otlp-endpoint takes HOST:PORT, and Envoy sends its spans there in plaintext; the
    # gateway's exporter spoke TLS to it, and every batch failed its handshake.
    receiver = Receiver()
    receiver.start()
    endpoint = receiver.endpoint.removeprefix("http://")
    trace_id = secrets.token_bytes(16)
    try:
        root = inproc_cell.settings.sax_root
        telemetry = TelemetrySettings(otlp_endpoint=endpoint)
        async with (
            running_gateway(root, health_interval=60, telemetry=telemetry) as server,
            aio_channel(server.address) as channel,
        ):
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            metadata = [("traceparent", f"00-{trace_id.hex()}-{'1' * 16}-01")]
            await stub.GetInfo(pb.GetInfoRequest(), metadata=metadata, timeout=10)
        # The gateway's stop exported what it held.
        assert [s.name for s in receiver.spans(trace_id)] == ["saxgateway.v1.SaxGateway/GetInfo"]
    finally:
        receiver.stop()


async def test_a_trace_collector_that_is_down_is_logged_once_not_at_every_batch(
    inproc_cell: InprocCell, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The exporter logged a WARNING per retry and an ERROR per batch it gave up, every few
    # seconds per gateway process while the collector was down. Batches every 50 ms, each
    # given 1 s, make that many lines in a few seconds here.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    caplog.set_level(logging.WARNING, logger=EXPORTER_LOGGER)
    down = TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    root = inproc_cell.settings.sax_root
    async with (
        running_gateway(root, health_interval=60, telemetry=down) as server,
        aio_channel(server.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for _ in range(30):  # 3 s of spans the exporter cannot send
            await stub.GetInfo(pb.GetInfoRequest(), timeout=10)
            await asyncio.sleep(0.1)
    lines = [r for r in caplog.records if r.name == EXPORTER_LOGGER]
    assert len(lines) == 1, [r.getMessage() for r in lines]


async def test_a_gateway_stops_promptly_when_its_trace_collector_is_down(
    inproc_cell: InprocCell,
) -> None:
    # The tracing SDK's shutdown retried the spans still buffered for up to 10 s a batch
    # against a collector that was down: every gateway stop (a rolling restart's too) took
    # 8 s or more longer, with no call left to serve.
    settings = GatewaySettings(
        client=ClientSettings(sax_root=inproc_cell.settings.sax_root),
        health_interval=60,
        telemetry=TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{free_port()}"),
    )
    server = await GatewayServer.start(settings)
    try:
        async with aio_channel(server.address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            for _ in range(20):  # spans the exporter cannot send
                await stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    finally:
        started = time.monotonic()
        await server.stop(grace=0)
        stopped_in = time.monotonic() - started
    # SHUTDOWN_TIMEOUT_S (2 s; 2.01 s loaded); the bad was 8 s or more longer. 4 s of room,
    # not 1.5 s: a loaded host's pauses.
    assert stopped_in < SHUTDOWN_TIMEOUT_S + 4.0


async def test_an_unpublished_models_series_leave_the_gateways_memory(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # Each method's recorder kept the series of every model it had counted, unpublished ones
    # too: publishing and unpublishing versioned models grew a gateway by ~29 KB a model
    # (300 models: 8.6 MB), though their series were dropped from the registry.
    assert gateway.metrics is not None
    async with admin_stub(inproc_cell.admin.address) as admin:
        model = await publish(admin, "versioned", overrides={"text": "v1"})
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
        gateway.metrics.flush()
        key = ("lm.generate", model, "")
        series = weakref.ref(gateway.metrics.request_duration._metrics[key])
        await stub.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=10)
    assert key not in gateway.metrics.request_duration._metrics  # forgotten by the registry
    # The next call counted (under another model's name) finds the cache out of date. It is
    # counted after its reply has gone (the telemetry's `finally`): on a loaded host, after
    # the client has it, so the test waits for that, within a bound.
    await _call_an_unknown_model(gateway)
    for _ in range(50):
        gateway.metrics.flush()
        gc.collect()
        if series() is None:
            break
        await asyncio.sleep(0.1)
    assert series() is None


async def _call_an_unknown_model(gateway: GatewayServer) -> None:
    async with aio_channel(gateway.address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Generate(pb.GenerateRequest(model="/sax/test/nope", query="x"), timeout=10)


@pytest.fixture
def metrics_dir_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for an in-process gateway's metrics, and this process's prometheus_client
    put back as it was after the test: `use_directory` switches the whole process to
    multiprocess values, so every later test of this worker that made GatewayMetrics shared
    its values through files by name and labels (a unit test's address-change count read
    another test's on, once in a full run)."""
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setattr(values, "MmapedDict", getattr(values, "MmapedDict"))  # noqa: B009
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


async def test_a_metrics_dirs_values_of_an_unpublished_model_are_let_go(
    inproc_cell: InprocCell, metrics_dir_mode: Path
) -> None:
    tmp_path = metrics_dir_mode
    # prometheus_client's multiprocess values stay in a list of the library's, and each
    # file kept every key it had written in memory: with a metrics directory (every `saxgw
    # up`), a model published, called and unpublished still cost ~14 KB for good. Published
    # again, its counts go on from the old totals.
    telemetry = TelemetrySettings(metrics_dir=str(tmp_path))
    async with (
        running_gateway(inproc_cell.settings.sax_root, telemetry=telemetry) as gateway,
        admin_stub(inproc_cell.admin.address) as admin,
        aio_channel(gateway.address) as channel,
    ):
        assert gateway.metrics is not None
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        model = ""
        for _ in range(2):
            model = await publish(admin, "again", overrides={"text": "v1"})
            await stub.Generate(pb.GenerateRequest(model=model, query="hello"), timeout=10)
            gateway.metrics.flush()
            await stub.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=10)
            registry = _metricstore._value_registry()
            assert registry is not None
            assert not [v for v in registry if model in v._key]
            # The counters' (and histograms') files that other series still use.
            files = {id(v._file): v._file for v in registry if v._params[0] != "gauge"}
            assert files
            assert not [k for f in files.values() for k in f._positions if model in k]
        collector = MultiProcessCollector(None, path=str(tmp_path))  # type: ignore[no-untyped-call]
        totals = [
            s.value
            for metric in collector.collect()  # type: ignore[no-untyped-call]
            for s in metric.samples
            if s.name == "gen_ai_server_request_duration_seconds_count"
            and s.labels.get("gen_ai_request_model") == model
        ]
        assert totals == [2.0]
