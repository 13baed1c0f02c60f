"""Operating the gateway: one scrape URL over two gateway processes and Envoy, the trace of
one HTTP request in a real OTLP receiver, and Envoy's JSON access log.

A second, small stack (two gateway processes, Envoy, the ops server, tracing on) runs in front
of the session stack's cell, so the rest of the suite runs without tracing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from saxgateway.v1.gateway_pb2 import GenerateRequest, GenerateStreamRequest

from gateway.cli._edge import envoy_settings
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.config import TelemetrySettings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.service._metrics import GatewayMetrics
from tests._otlp import Receiver, attributes
from tests._stacks import loopback_envoy
from tests.e2e._access_log import access_log_line
from tests.e2e._grpc_replies import grpc_web_call
from tests.e2e._openai import write_config
from tests.e2e._published import REQUEST_INFO, TEST_LM, published
from tests.e2e.test_grpc_web import _unframe

MODEL = "/sax/test/operate"
#: A model the ops stack runs one call of at once (quotas.models), for its queue gauge; only
#: test_calls_waiting_for_a_models_slot_show_in_the_scrape publishes it.
QUEUED = "/sax/test/operate-queued"
COST = "x-sax-query-cost-ms"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    # Words of the test tokenizer's vocabulary (tests/e2e/_openai.py): 3 tokens.
    with published(stack, MODEL, TEST_LM, {"text": "hello world brief"}) as name:
        yield name


KEY = "sk-team-a-operate-5e1c"
AUTH = {"authorization": f"Bearer {KEY}"}
SERVICE = "/saxgateway.v1.SaxGateway"


@pytest.fixture(scope="module")
def ops_stack(
    stack: Stack, receiver: Receiver, model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Authenticated (one API key, client team-a), with a tokenizer for ``MODEL``."""
    base = tmp_path_factory.mktemp("ops-stack")
    write_config(base)  # the SentencePiece model spm.model, beside the config
    config_file = base / "saxgw.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "auth": {
                    "api_keys": [{"key": KEY, "client": "team-a", "roles": ["admin", "data"]}]
                },
                "models": {MODEL: {"tokenizer": "spm.model"}},
                "quotas": {"models": {QUEUED: {"max_in_flight": 1, "max_queued": 4}}},
            }
        )
    )
    telemetry = TelemetrySettings(otlp_endpoint=receiver.endpoint)
    gateway = dataclasses.replace(stack.settings.gateway, telemetry=telemetry)
    settings = StackSettings(
        gateway=dataclasses.replace(gateway, config_file=str(config_file)),
        gateway_ports=(free_port(), free_port()),
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        ops_port=free_port(),
        log_dir=str(base),
    )
    with Stack(settings) as running:
        assert running.wait_healthy(timeout=60), "the ops stack never became healthy"
        yield running


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape_until(stack: Stack, ready: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    """Scrapes the ops server until ``ready`` holds (or the timeout passes); the last scrape."""
    assert stack.metrics_url is not None
    deadline = time.monotonic() + timeout
    while True:
        scrape = httpx.get(stack.metrics_url, timeout=30)
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _samples(scrape.text)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_one_scrape_covers_every_gateway_process_and_envoy(ops_stack: Stack, model: str) -> None:
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for _ in range(8):
            reply = http.post("/generate", json={"model": model, "query": "hello"})
            assert reply.status_code == 200, reply.text
            assert int(reply.headers["x-sax-query-cost-ms"]) >= 1
        for _ in range(2):
            events = http.post("/generate_stream", json={"model": model, "query": "hello"})
            assert events.status_code == 200
        assert (
            http.post("/generate", json={"model": "/sax/test/nope", "query": "x"}).status_code
            == 404
        )
        assert http.post("/generate", json={"model": model}).status_code == 400

    generate = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": model}
    stream = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_request_model": model}
    duration = "gen_ai_server_request_duration_seconds_count"
    # Counted by the client Envoy authenticated (x-saxgw-client).
    requests, team_a = "saxgw_requests_total", {"client": "team-a"}
    invalid = {"grpc_method": "Generate", "grpc_code": "INVALID_ARGUMENT", **team_a}
    missing = {"grpc_method": "Generate", "grpc_code": "NOT_FOUND", **team_a}
    # Each gateway process writes its counts out once a second, on its own clock: scrape
    # until every call shows.
    samples = _scrape_until(
        ops_stack,
        lambda s: (
            _value(s, duration, **stream, error_type="") == 2
            and _value(s, duration, **generate, error_type="") == 8
            and _value(s, requests, **invalid) == 1
            and _value(s, requests, **missing) == 1
        ),
    )
    # Envoy spread the calls over both processes; the scrape adds them up.
    assert len(list(ops_stack.metrics_dir.glob("histogram_*.db"))) == 2
    assert _value(samples, duration, **generate, error_type="") == 8
    assert _value(samples, duration, **stream, error_type="") == 2
    assert _value(samples, "gen_ai_server_time_to_first_token_seconds_count", **stream) == 2
    assert _value(samples, requests, grpc_method="Generate", grpc_code="OK", **team_a) == 8
    assert _value(samples, requests, **missing) == 1
    assert _value(samples, requests, **invalid) == 1
    assert _value(samples, "saxgw_model_replicas", gen_ai_request_model=model) == 1
    assert _value(samples, "saxgw_query_cost_tpu_milliseconds_total", **generate, **team_a) >= 8
    # The model's tokenizer counts tokens: "hello" is one word, the answer three, per call.
    usage = "gen_ai_client_token_usage_sum"
    assert _value(samples, usage, **generate, **team_a, gen_ai_token_type="input") == 8
    assert _value(samples, usage, **generate, **team_a, gen_ai_token_type="output") == 24
    assert _value(samples, usage, **stream, **team_a, gen_ai_token_type="output") == 6
    assert not any("/sax/test/nope" in dict(labels).values() for _, labels in samples)
    # Envoy's own families come with them, and the ops server says it reached Envoy.
    assert _value(samples, "saxgw_envoy_up") == 1
    assert _value(samples, "saxgw_sax_admin_up", sax_cell="/sax/test") == 1  # the probes'
    assert any(name.startswith("envoy_cluster_upstream_rq") for name, _ in samples)
    assert _value(samples, "saxgw_metrics_dir_writable") == 1  # the files above: all there


def test_each_gateway_process_names_itself_in_its_log_lines(ops_stack: Stack) -> None:
    # Without --log-dir, every gateway process of `saxgw up --workers N` writes to saxgw's
    # one stderr: a line that does not say which process wrote it (a hung model server
    # found, a watch that failed, a traceback) could not be put beside the supervisor's
    # `gateway-1 (pid 4242) is hung` or that process's metrics.
    assert ops_stack.settings.log_dir is not None
    for index in range(len(ops_stack.settings.gateway_ports)):
        path = Path(ops_stack.settings.log_dir, f"gateway-{index}.log")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        serving = [line for line in lines if line["message"].startswith("gateway serving")]
        assert serving, lines
        assert {line.get("process") for line in lines} == {f"gateway-{index}"}


def test_resource_path_calls_count_under_the_model_they_name(ops_stack: Stack, model: str) -> None:
    # /v1/sax/{cell}/{name}:generate binds "sax/test/operate", without the body's leading
    # slash; before, such calls were all counted under "unknown" and their tokens not at all.
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for _ in range(3):
            reply = http.post(f"/v1{model}:score", json={"prefix": "hello", "suffix": ["world"]})
            assert reply.status_code == 200, reply.text

    score = {"gen_ai_operation_name": "lm.score", "gen_ai_request_model": model}
    duration = "gen_ai_server_request_duration_seconds_count"
    samples = _scrape_until(ops_stack, lambda s: _value(s, duration, **score, error_type="") == 3)
    assert _value(samples, duration, **score, error_type="") == 3
    unknown = {**score, "gen_ai_request_model": "unknown"}
    assert _value(samples, duration, **unknown, error_type="") == 0
    usage = "gen_ai_client_token_usage_sum"  # "hello" and "world": one token each, per call
    assert _value(samples, usage, **score, client="team-a", gen_ai_token_type="input") == 6


def test_openai_calls_count_the_tokens_their_usage_reports(ops_stack: Stack, model: str) -> None:
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        reply = http.post("/v1/completions", json={"model": model, "prompt": "hello world"})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2, 3)

    op = {"gen_ai_operation_name": "text_completion", "gen_ai_request_model": model}
    tokens = "gen_ai_client_token_usage"
    samples = _scrape_until(
        ops_stack,
        lambda s: (
            _value(s, f"{tokens}_count", **op, client="team-a", gen_ai_token_type="input") == 1
        ),
    )
    assert _value(samples, f"{tokens}_sum", **op, client="team-a", gen_ai_token_type="input") == 2
    assert _value(samples, f"{tokens}_sum", **op, client="team-a", gen_ai_token_type="output") == 3
    assert _value(samples, "gen_ai_server_request_duration_seconds_count", **op, error_type="") == 1
    ok = {"grpc_method": "CreateCompletion", "grpc_code": "OK", "client": "team-a"}
    assert _value(samples, "saxgw_requests_total", **ok) == 1


def test_openai_streams_time_their_first_and_later_chunks(ops_stack: Stack, model: str) -> None:
    # Time to first chunk and between chunks were GenerateStream's only: the OpenAI face's
    # streams (chat, completions), the usual way to stream, left those panels empty.
    chat = {"gen_ai_operation_name": "text_completion", "gen_ai_request_model": model}
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    tpot = "gen_ai_server_time_per_output_token_seconds_count"
    before = _scrape_until(ops_stack, lambda s: True)
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for stream in (True, True, False):  # a completion not streamed has no chunks
            body = {"model": model, "prompt": "hello", "stream": stream}
            reply = http.post("/v1/completions", json=body)
            assert reply.status_code == 200, reply.text

    duration = "gen_ai_server_request_duration_seconds_count"

    def added(samples: Samples, name: str, **labels: str) -> float:
        return _value(samples, name, **chat, **labels) - _value(before, name, **chat, **labels)

    # A call's duration is recorded when its handler returns, which can be after the client
    # has read the stream's last byte: the scrape waits for all three.
    samples = _scrape_until(
        ops_stack,
        lambda s: (
            added(s, ttft) >= 2 and added(s, tpot) >= 2 and added(s, duration, error_type="") >= 3
        ),
    )
    # The model's answer, "hello world brief", streams as three chunks with text.
    assert added(samples, ttft) == 2
    assert added(samples, tpot) == 2
    assert added(samples, duration, error_type="") == 3


def test_failed_openai_calls_are_timed_under_their_model_and_code(
    ops_stack: Stack, model: str
) -> None:
    # Only a successful OpenAI call used to tell the telemetry its model, and a call whose
    # model was unknown was not timed at all: failed OpenAI calls were missing from the
    # duration histogram (and so from the dashboard's error ratio), while
    # saxgw_requests_total counted them.
    duration = "gen_ai_server_request_duration_seconds_count"
    completion = {"gen_ai_operation_name": "text_completion"}
    absent = {**completion, "gen_ai_request_model": "unknown", "error_type": "NOT_FOUND"}
    short = {**completion, "gen_ai_request_model": model, "error_type": "INVALID_ARGUMENT"}
    before = _scrape_until(ops_stack, lambda s: True)
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for name in ("/sax/test/absent", "no such model"):
            for stream in (False, True):
                body = {"model": name, "prompt": "hello", "stream": stream}
                assert http.post("/v1/completions", json=body).status_code == 404
        # Failing once the model answered: it returns one sample, not the two asked for.
        for stream in (False, True):
            asked = {"model": model, "prompt": "hello", "n": 2, "stream": stream}
            reply = http.post("/v1/completions", json=asked)
            assert reply.status_code == 400, reply.text

    def added(samples: Samples, labels: dict[str, str]) -> float:
        return _value(samples, duration, **labels) - _value(before, duration, **labels)

    requests = "saxgw_requests_total"
    expected = (("NOT_FOUND", 4), ("INVALID_ARGUMENT", 2))

    def counted(samples: Samples, code: str) -> float:
        labels = {"grpc_method": "CreateCompletion", "grpc_code": code, "client": "team-a"}
        return _value(samples, requests, **labels) - _value(before, requests, **labels)

    # In multiprocess mode each metric type has its own file per process and a scrape reads
    # the files one after another: a flush between two reads can show a new histogram beside
    # an old counter. Wait for both series, not the histogram alone.
    samples = _scrape_until(
        ops_stack,
        lambda s: (
            added(s, absent) >= 4
            and added(s, short) >= 2
            and all(counted(s, code) >= calls for code, calls in expected)
        ),
    )
    assert added(samples, absent) == 4
    assert added(samples, short) == 2
    for code, calls in expected:
        assert counted(samples, code) == calls


def test_a_call_that_failed_after_its_model_answered_reports_what_it_cost(
    ops_stack: Stack, model: str
) -> None:
    # The model answered (one sample, where n asks for two) and reported its cost, which the
    # metrics counted for the client; the failure carried no cost, so the access log had
    # none, and a bill made from it disagreed with one made from the metrics. (A stream is
    # refused at its first message, when the model has reported no cost yet: none anywhere.)
    cost = "saxgw_query_cost_tpu_milliseconds_total"
    op = {"gen_ai_operation_name": "text_completion", "gen_ai_request_model": model}
    before = _value(_scrape_until(ops_stack, lambda s: True), cost, **op, client="team-a")
    logged = {}
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for stream in (False, True):
            request_id = f"n2-{secrets.token_hex(6)}"
            body = {"model": model, "prompt": "hello", "n": 2, "stream": stream}
            reply = http.post("/v1/completions", json=body, headers={"x-request-id": request_id})
            assert reply.status_code == 400, reply.text
            logged[stream] = access_log_line(ops_stack, request_id)["query_cost_ms"]
    assert str(logged[False]).isdigit() and logged[True] is None, logged
    total = before + int(str(logged[False]))
    samples = _scrape_until(ops_stack, lambda s: _value(s, cost, **op, client="team-a") >= total)
    assert _value(samples, cost, **op, client="team-a") == total


def test_the_public_port_exposes_neither_metrics_nor_envoy_admin(ops_stack: Stack) -> None:
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        for path in ("/metrics", "/stats/prometheus", "/server_info", "/config_dump"):
            assert http.get(path).status_code == 404, path
        # /stats is the gateway's own GetStats route (a Sax cell's stats), not Envoy's.
        stats = http.get("/stats")
        assert stats.status_code == 400
        assert stats.json()["code"] == 3
        assert "envoy" not in stats.text.lower()


def test_one_http_request_is_one_trace_from_client_to_sax(
    ops_stack: Stack, receiver: Receiver, model: str
) -> None:
    trace_id, client_span = secrets.token_bytes(16), secrets.token_bytes(8)
    traceparent = f"00-{trace_id.hex()}-{client_span.hex()}-01"
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        reply = http.post(
            "/generate",
            json={"model": model, "query": "hello"},
            headers={"traceparent": traceparent},
        )
    assert reply.status_code == 200, reply.text

    # client -> Envoy -> gateway -> Sax model server, all in the caller's trace.
    spans = receiver.wait_until(
        trace_id,
        lambda spans: (
            {"sax lm.Generate", "saxgateway.v1.SaxGateway/Generate"} <= {s.name for s in spans}
            and any(receiver.service(s) == "sax-gateway-envoy" for s in spans)
        ),
    )
    [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    [sax] = [s for s in spans if s.name == "sax lm.Generate"]
    # The gateway's other Sax RPCs for this call (the model's ACLs, asked of the admin unless
    # cached) are in the same trace, under the gateway's span.
    assert all(s.parent_span_id == server.span_id for s in spans if s.kind == CLIENT)
    assert envoy.parent_span_id == client_span
    assert server.name == "saxgateway.v1.SaxGateway/Generate"
    assert server.parent_span_id == envoy.span_id
    assert sax.name == "sax lm.Generate"
    assert sax.parent_span_id == server.span_id
    assert receiver.service(sax) == "sax-gateway"
    server_attributes, sax_attributes = attributes(server), attributes(sax)
    assert server_attributes["gen_ai.request.model"] == model
    assert server_attributes["rpc.grpc.status_code"] == 0
    assert sax_attributes["server.address"] == "127.0.0.1"
    assert sax_attributes["sax.attempt"] == 1
    assert sax_attributes["sax.query_cost_ms"] == int(reply.headers["x-sax-query-cost-ms"])

    # Envoy's access log line of that request carries the same request ID as the span.
    request_id = server_attributes["saxgw.request_id"]
    # Envoy logs the traceparent it sent on (its own span's), so look for the trace ID.
    line = access_log_line(ops_stack, trace_id.hex())
    assert line["request_id"] == request_id
    assert line["method"] == "POST"
    assert line["path"] == "/generate"
    assert line["grpc_method"] == "/saxgateway.v1.SaxGateway/Generate"
    assert line["status"] == 200
    assert line["grpc_status"] == 0
    assert line["query_cost_ms"] == reply.headers["x-sax-query-cost-ms"]
    assert line["bytes_sent"] == len(reply.content)
    assert line["client_id"] == "team-a"  # the identity Envoy established, as the span says
    assert server_attributes["enduser.id"] == "team-a"
    assert isinstance(line["duration_ms"], int)
    assert isinstance(line["upstream_ms"], int) and line["upstream_ms"] <= line["duration_ms"]


def test_envoys_span_leaves_out_the_query_string(ops_stack: Stack, receiver: Receiver) -> None:
    # The access log writes paths without their query, where a client may have put a key or a
    # token; Envoy's span gave the whole URL in http.url.
    trace = secrets.token_bytes(16)
    headers = {**AUTH, "traceparent": f"00-{trace.hex()}-{secrets.token_bytes(8).hex()}-01"}
    secret = f"sk-{secrets.token_hex(8)}"
    reply = httpx.get(
        f"{ops_stack.http_url}/listall",
        params={"sax_cell": "/sax/test", "api_key": secret},
        headers=headers,
        timeout=30,
    )
    assert reply.status_code == 400, reply.text  # api_key is no field the route knows
    spans = receiver.wait_until(
        trace, lambda spans: any(receiver.service(s) == "sax-gateway-envoy" for s in spans)
    )
    [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
    assert attributes(envoy)["http.url"] == f"{ops_stack.http_url}/listall"
    assert secret not in str(envoy)


@pytest.mark.parametrize("kind", ["text", "uuid"])
@pytest.mark.parametrize("sampled", [True, False])
def test_a_callers_request_id_is_kept_everywhere_and_its_trace_followed(
    ops_stack: Stack, receiver: Receiver, kind: str, sampled: bool
) -> None:
    # Envoy used to read sampling from the x-request-id: with a caller's own ID that was no
    # UUID, a caller's sampled traceparent was dropped (no trace at all, whatever the
    # ratio), and a caller's UUID came back with one digit changed (Envoy packed its trace
    # decision into it), so the ID the caller logged matched nothing.
    request_id = f"probe-{secrets.token_hex(6)}" if kind == "text" else str(uuid.uuid4())
    headers = {**AUTH, "x-request-id": request_id}
    caller = secrets.token_bytes(8)
    if sampled:
        headers["traceparent"] = f"00-{secrets.token_bytes(16).hex()}-{caller.hex()}-01"
    with httpx.Client(base_url=ops_stack.http_url, headers=headers, timeout=30) as http:
        reply = http.post("/generate", json={"model": "/sax/test/absent", "query": "q"})
    assert reply.status_code == 404, reply.text
    assert reply.headers["x-request-id"] == request_id
    assert reply.json()["details"] == [
        {"@type": REQUEST_INFO, "request_id": request_id, "serving_data": ""}
    ]
    line = access_log_line(ops_stack, request_id)
    assert line["request_id"] == request_id
    # The traceparent Envoy sent on: the caller's trace, or (no traceparent) a new one that
    # the sample ratio of 1 records.
    traceparent = str(line["traceparent"])
    _, trace_hex, _, flags = traceparent.split("-")
    assert flags == "01", traceparent
    if sampled:
        assert trace_hex == headers["traceparent"].split("-")[1]
    # Envoy's span and the gateway's server span, not any gateway span: the gateway's client
    # span (its admin lookup of the model) ends first, and can go out in an earlier batch.
    spans = receiver.wait_until(
        bytes.fromhex(trace_hex),
        lambda spans: (
            any(receiver.service(s) == "sax-gateway-envoy" for s in spans)
            and any(s.kind == SERVER and receiver.service(s) == "sax-gateway" for s in spans)
        ),
    )
    [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    assert envoy.parent_span_id == (caller if sampled else b"")
    assert server.parent_span_id == envoy.span_id
    assert attributes(envoy)["guid:x-request-id"] == request_id
    assert attributes(server)["saxgw.request_id"] == request_id
    assert attributes(server)["rpc.grpc.status_code"] == 5
    assert attributes(server)["error.type"] == "NOT_FOUND"
    # The caller's mistake, not the server's failure (OpenTelemetry's gRPC conventions).
    assert server.status.code == trace_pb2.Status.STATUS_CODE_UNSET


def test_the_access_log_names_the_trace_of_every_request_envoy_traced(
    ops_stack: Stack, receiver: Receiver, model: str
) -> None:
    # The log's traceparent is the header Envoy sent on to a gateway: a request Envoy refused
    # itself (no key, an unknown path) sent none, and its line had null, or the caller's own
    # header, where Envoy had recorded a span of it in a trace of its own.
    calls = {
        "refused": ("/generate", {}, 401),
        "unrouted": ("/no/such/path", AUTH, 404),
        "served": ("/generate", AUTH, 200),
    }
    for name, (path, headers, status) in calls.items():
        request_id = f"trace-{name}-{secrets.token_hex(6)}"
        with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
            reply = http.post(
                path, json={"model": model, "query": "q"},
                headers={**headers, "x-request-id": request_id},
            )  # fmt: skip
        assert reply.status_code == status, reply.text
        line = access_log_line(ops_stack, request_id)
        trace_hex = str(line["trace_id"])
        spans = receiver.wait_until(
            bytes.fromhex(trace_hex),
            lambda spans: any(receiver.service(s) == "sax-gateway-envoy" for s in spans),
        )
        [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
        assert attributes(envoy)["guid:x-request-id"] == request_id, name
        if status == 200:  # the traceparent Envoy sent on is of the same trace
            assert str(line["traceparent"]).split("-")[1] == trace_hex, line


def test_the_gateways_span_names_the_request_id_prefix_the_logs_keep(
    ops_stack: Stack, receiver: Receiver
) -> None:
    # A caller picks its x-request-id, up to the header limit (60 KiB), and each server span
    # carried it whole: a batch of spans went over a collector's 4 MiB message limit (the
    # OpenTelemetry Collector's default), which refused it, so one caller's long IDs lost the
    # spans of every call exported with them (measured: 300 calls with 50 KB IDs, 104 of
    # their spans received, the rest refused RESOURCE_EXHAUSTED with what was batched beside).
    request_id = f"long-{secrets.token_hex(6)}-" + "r" * 20_000
    trace_id = secrets.token_bytes(16)
    headers = {
        **AUTH,
        "x-request-id": request_id,
        "traceparent": f"00-{trace_id.hex()}-{secrets.token_bytes(8).hex()}-01",
    }
    with httpx.Client(base_url=ops_stack.http_url, headers=headers, timeout=30) as http:
        reply = http.post("/generate", json={"model": "/sax/test/absent", "query": "q"})
    assert reply.status_code == 404, reply.text
    spans = receiver.wait_until(
        trace_id,
        lambda spans: any(s.kind == SERVER and receiver.service(s) == "sax-gateway" for s in spans),
    )
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    prefix = request_id[:LOGGED_ID_CHARS]
    assert attributes(server)["saxgw.request_id"] == prefix
    assert access_log_line(ops_stack, prefix)["request_id"] == prefix


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        ("http", 200, 0),
        ("http-absent", 404, 5),  # the transcoder turned the gateway's NOT_FOUND into a 404
        ("http-malformed", 400, 3),  # Envoy's own reply, tagged by its local reply mapper
        ("grpc-web", 200, 0),  # grpc_web moves the trailers into the body
        # No gRPC call, no code (the access log's format, as text, tagged it "NULL").
        ("openapi", 200, None),
    ],
)
def test_envoys_span_carries_the_grpc_status_the_client_got(
    ops_stack: Stack, receiver: Receiver, model: str, call: str, status: int, code: int | None
) -> None:
    # Envoy tags a span with the grpc-status it finds in the reply's trailers only: the
    # three calls that end any other way had no grpc.status_code, where the access log had
    # their code (a call its client gave up: tests/e2e/test_traces.py).
    trace = secrets.token_bytes(16)
    traceparent = f"00-{trace.hex()}-{secrets.token_bytes(8).hex()}-01"
    headers = {**AUTH, "traceparent": traceparent}
    url = f"{ops_stack.http_url}/generate"
    if call == "grpc-web":
        message = GenerateRequest(model=model, query="q")
        reply = grpc_web_call(f"{ops_stack.http_url}{SERVICE}/Generate", message, headers)
    elif call == "http-malformed":
        reply = httpx.post(url, content=b"{", headers=headers, timeout=30)
    elif call == "openapi":
        reply = httpx.get(f"{ops_stack.http_url}/openapi.json", headers=headers, timeout=30)
    else:
        name = model if call == "http" else "/sax/test/absent"
        reply = httpx.post(url, json={"model": name, "query": "q"}, headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    spans = receiver.wait_until(
        trace, lambda spans: any(receiver.service(s) == "sax-gateway-envoy" for s in spans)
    )
    [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
    assert attributes(envoy).get("grpc.status_code") == (None if code is None else str(code))
    assert access_log_line(ops_stack, trace.hex())["grpc_status"] == code


@pytest.mark.parametrize(
    ("body", "status", "code", "error"),
    [
        ({"query": "q"}, 400, "INVALID_ARGUMENT", False),
        ({"model": "/sax/test/absent", "query": "q"}, 404, "NOT_FOUND", False),
        ({"model": MODEL, "query": "q", "timeout": "0.000001s"}, 504, "DEADLINE_EXCEEDED", True),
    ],
)
def test_a_server_span_is_an_error_when_the_server_failed_not_the_caller(
    ops_stack: Stack,
    receiver: Receiver,
    model: str,
    body: dict[str, str],
    status: int,
    code: str,
    error: bool,
) -> None:
    # Every code but OK made the gateway's server span an error, so a trace backend's error
    # rate counted each typo and refused caller; OpenTelemetry's gRPC conventions keep server
    # spans of a caller's mistake unset (as Envoy's own span does below 500). Client spans (the
    # gateway's calls to Sax) are errors whatever failed.
    trace = secrets.token_bytes(16)
    headers = {**AUTH, "traceparent": f"00-{trace.hex()}-{secrets.token_bytes(8).hex()}-01"}
    reply = httpx.post(f"{ops_stack.http_url}/generate", json=body, headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    spans = receiver.wait_until(
        trace,
        lambda spans: any(s.kind == SERVER and receiver.service(s) == "sax-gateway" for s in spans),
    )
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    assert attributes(server)["error.type"] == code
    expected = trace_pb2.Status.STATUS_CODE_ERROR if error else trace_pb2.Status.STATUS_CODE_UNSET
    assert server.status.code == expected
    for client in (s for s in spans if s.kind == CLIENT and attributes(s)["rpc.grpc.status_code"]):
        assert client.status.code == trace_pb2.Status.STATUS_CODE_ERROR


def test_a_span_of_a_request_naming_no_model_has_no_model_attribute(
    ops_stack: Stack, receiver: Receiver
) -> None:
    trace = secrets.token_bytes(16)
    headers = {**AUTH, "traceparent": f"00-{trace.hex()}-{secrets.token_bytes(8).hex()}-01"}
    reply = httpx.post(
        f"{ops_stack.http_url}/generate", json={"query": "q"}, headers=headers, timeout=30
    )
    assert reply.status_code == 400, reply.text
    spans = receiver.wait_until(
        trace,
        lambda spans: any(s.kind == SERVER and receiver.service(s) == "sax-gateway" for s in spans),
    )
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    assert "gen_ai.request.model" not in attributes(server)  # it was "", a model named ""
    assert attributes(server)["gen_ai.operation.name"] == "lm.generate"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "/sax/test/absent", "query": "q"}, 404, 5),  # Envoy's own table: 12
        ({"query": "q"}, 400, 3),  # Envoy's own table: 13
    ],
)
def test_the_access_log_records_the_gateway_code_of_a_failed_http_call(
    ops_stack: Stack, body: dict[str, str], status: int, code: int
) -> None:
    # The transcoder turns the gateway's grpc-status into the HTTP status and a JSON body;
    # the log used to derive a code back from the HTTP status, which names another error.
    trace_id = secrets.token_bytes(16)
    traceparent = f"00-{trace_id.hex()}-{secrets.token_bytes(8).hex()}-01"
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        reply = http.post("/generate", json=body, headers={"traceparent": traceparent})
    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
    line = access_log_line(ops_stack, trace_id.hex())
    assert (line["status"], line["grpc_status"]) == (status, code)


def test_the_access_log_records_a_finished_sse_streams_status_and_cost(
    ops_stack: Stack, model: str
) -> None:
    # Both come from the stream's trailers, which an HTTP/1.1 client never sees: removing
    # them from what Envoy sends on (to hide grpc-status from HTTP/2 clients) made every
    # successful stream log UNKNOWN (2) and no cost.
    request_id = f"sse-{secrets.token_hex(6)}"
    headers = {**AUTH, "x-request-id": request_id}
    with (
        httpx.Client(base_url=ops_stack.http_url, headers=headers, timeout=30) as http,
        http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as reply,
    ):
        events = [line for line in reply.iter_lines() if line.startswith("data:")]
    assert reply.status_code == 200 and '"done":true' in events[-1], events
    line = access_log_line(ops_stack, request_id)
    assert (line["status"], line["grpc_status"]) == (200, 0), line
    assert str(line["stream_query_cost_ms"]).isdigit(), line  # milliseconds, as the header


def test_the_access_log_records_a_grpc_web_calls_cost(ops_stack: Stack, model: str) -> None:
    # grpc_web moves a reply's trailers into its body before the log reads them: a grpc-web
    # stream's cost was in no field of its line (both null), and a unary call's only in
    # query_cost_ms, though the metrics counted both and the client had them in its trailers.
    calls = {
        "Generate": GenerateRequest(model=model, query="q"),
        "GenerateStream": GenerateStreamRequest(model=model, query="q"),
    }
    for method, message in calls.items():
        request_id = f"web-{secrets.token_hex(6)}"
        headers = {**AUTH, "x-request-id": request_id}
        reply = grpc_web_call(f"{ops_stack.http_url}{SERVICE}/{method}", message, headers)
        _, trailers = _unframe(reply.content)
        assert (reply.status_code, trailers["grpc-status"]) == (200, "0"), reply.content
        cost = trailers[COST]
        line = access_log_line(ops_stack, request_id)
        assert (line["grpc_status"], line["stream_query_cost_ms"]) == (0, cost), (method, line)
        unary = method == "Generate"
        assert line["query_cost_ms"] == (cost if unary else None), (method, line)


def test_the_documented_access_log_line_is_the_one_envoy_writes(
    ops_stack: Stack, model: str
) -> None:
    # docs/operations.md's example of a /generate line: same fields, and a unary call's cost
    # in both cost fields (it showed the trailer's as null, which Envoy never writes for one).
    doc = (ROOT / "docs/operations.md").read_text()
    example = re.search(r"one JSON line per request.*?```json\n(.*?)```", doc, re.S)
    assert example is not None
    documented = json.loads(example.group(1))
    request_id = f"doc-{secrets.token_hex(6)}"
    headers = {**AUTH, "x-request-id": request_id}
    with httpx.Client(base_url=ops_stack.http_url, headers=headers, timeout=30) as http:
        reply = http.post("/generate", json={"model": model, "query": "hello"})
    assert reply.status_code == 200, reply.text
    line = access_log_line(ops_stack, request_id)
    assert line.keys() == documented.keys()
    assert line["query_cost_ms"] == line["stream_query_cost_ms"] == reply.headers[COST]
    assert documented["query_cost_ms"] == documented["stream_query_cost_ms"]
    assert {k: type(v) for k, v in documented.items() if v is not None} == {
        k: type(line[k]) for k, v in documented.items() if v is not None
    }


ROOT = Path(__file__).resolve().parents[2]
# PromQL words that are not metric names.
_PROMQL = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # matchers and ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = re.findall(r"(?<![\w$.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {w for w in words if w not in _PROMQL}


def test_every_dashboard_query_reads_an_exported_metric(ops_stack: Stack, model: str) -> None:
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        assert http.post("/generate", json={"model": model, "query": "hi"}).status_code == 200
        assert (
            http.post("/generate_stream", json={"model": model, "query": "hi"}).status_code == 200
        )
    stream = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_request_model": model}
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    _scrape_until(ops_stack, lambda s: _value(s, ttft, **stream) > 0)  # the stream shows
    assert ops_stack.metrics_url is not None
    scrape = httpx.get(ops_stack.metrics_url, timeout=30).text
    # Names as on the wire (prometheus_client's parser would add _total to Envoy's counters).
    exported = {re.split(r"[{ ]", line)[0] for line in scrape.splitlines() if line[:1].isalpha()}
    # Counters that only appear once something happens (a failover, a retry) count as
    # exported when the gateway defines them.
    defined = {
        f"{family.name}{suffix}"
        for family in GatewayMetrics().registry.collect()
        for suffix in _SUFFIXES[family.type]
    }
    dashboard = json.loads((ROOT / "deploy/grafana/sax-gateway.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) > 15
    # The model picker: label_values(metric, label) reads a label the metric has.
    template = dashboard["templating"]["list"][1]["definition"]
    picker = re.fullmatch(r"label_values\((\w+), (\w+)\)", template)
    assert picker is not None, template
    metric, label = picker.groups()
    assert any(
        line.startswith(metric + "{") and f'{label}="' in line for line in scrape.splitlines()
    )
    labels = _labels_by_metric(scrape)
    for query in queries:
        names = metric_names(query)
        assert names, query
        assert names <= exported | defined, (query, names - exported - defined)
        assert unknown_labels(query, labels) == set(), query
    panels = {p["title"] for p in dashboard["panels"]}
    assert {"Error ratio", "Replicas per model", "In flight"} <= panels


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def test_prometheus_example_scrapes_the_ops_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8889"]


# Labels Prometheus gives every series of a target, and the series it makes itself.
_TARGET_LABELS = {"job", "instance"}
_SYNTHETIC = {"up": {"job", "instance"}}


def _labels_by_metric(scrape: str) -> dict[str, set[str]]:
    """Each metric name on the wire (Envoy's counters without _total) and its label names,
    and each family the gateway defines with its labels (for those seen only once something
    happens: a failover, a retry)."""
    labels: dict[str, set[str]] = {name: set(keys) for name, keys in _SYNTHETIC.items()}
    for line in scrape.splitlines():
        if line[:1].isalpha():
            name, _, rest = line.partition("{")
            names = re.findall(r'(\w+)="', rest.rpartition("}")[0]) if rest else []
            labels.setdefault(name.split(" ")[0], set()).update(names)
    for family in vars(GatewayMetrics()).values():
        if isinstance(family, MetricWrapperBase):
            (described,) = family.describe()
            for suffix in _SUFFIXES[described.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                keys = set(family._labelnames) | extra
                labels.setdefault(f"{described.name}{suffix}", set()).update(keys)
    return labels


def unknown_labels(expr: str, labels: dict[str, set[str]]) -> set[str]:
    """The label names a PromQL expression matches on or groups by that none of the metrics
    it reads carries (Prometheus' target labels aside)."""
    read = metric_names(expr)
    carried = set().union(*(labels.get(name, set()) for name in read)) | _TARGET_LABELS
    missing = set()
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr):
        missing |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)) - labels.get(name, set())
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        missing |= {g.strip() for g in grouping.split(",") if g.strip()} - carried
    return missing


def test_every_alert_rule_reads_exported_metrics_and_labels(ops_stack: Stack, model: str) -> None:
    # The example rules an operator loads (prometheus.yml's rule_files): a rule that names a
    # metric or a label the stack does not export never fires, and nothing says so.
    with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
        assert http.post("/generate", json={"model": model, "query": "hi"}).status_code == 200
    replicas = f'saxgw_model_replicas{{gen_ai_request_model="{model}"}}'
    lines = _lines_until(ops_stack, lambda lines: any(s.startswith(replicas) for s in lines))
    scrape = "\n".join(lines)
    labels = _labels_by_metric(scrape)
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    [group] = rules["groups"]
    assert len(group["rules"]) >= 6
    healthy = _samples(scrape)
    for rule in group["rules"]:
        expr = rule["expr"]
        assert metric_names(expr) and metric_names(expr) <= labels.keys(), (rule["alert"], expr)
        assert unknown_labels(expr, labels) == set(), (rule["alert"], expr)
        assert rule["labels"]["severity"] in {"page", "warning"}
        # A rule on a gauge's value, `gauge == 0`, evaluated on this healthy stack: it reads
        # series that are there, and none of them fires.
        gauge = re.fullmatch(r"(saxgw_\w+) == 0", expr.strip())
        if gauge is not None:
            values = [v for (name, _), v in healthy.items() if name == gauge.group(1)]
            assert values and 0 not in values, (rule["alert"], values)
    healthy_gateways = [
        v
        for (name, keys), v in healthy.items()
        if name == "envoy_cluster_membership_healthy"
        and ("envoy_cluster_name", "gateway_grpc") in keys
    ]
    assert healthy_gateways == [2]  # SaxGatewayNoHealthyGateway's sum, far from 0


def _lines_until(
    stack: Stack, ready: Callable[[list[str]], bool], timeout: float = 20.0
) -> list[str]:
    """Scrapes the ops server until ``ready`` holds of its lines (or the timeout passes)."""
    assert stack.metrics_url is not None
    deadline = time.monotonic() + timeout
    while True:
        scrape = httpx.get(stack.metrics_url, timeout=30)
        assert scrape.status_code == 200
        lines = scrape.text.splitlines()
        if ready(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def test_an_unpublished_models_replicas_leave_the_scrape(ops_stack: Stack) -> None:
    # An unpublished model kept its label and its gauge (saxgw_model_replicas{...} 0.0) for
    # the gateway's lifetime; versioned models coming and going filled the label cap.
    gone = f"/sax/test/gone-{secrets.token_hex(3)}"
    series = f'saxgw_model_replicas{{gen_ai_request_model="{gone}"}}'
    with published(ops_stack, gone, TEST_LM, headers=AUTH):
        with httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http:
            for _ in range(4):  # Envoy spreads them: each gateway process watches the model
                reply = http.post("/generate", json={"model": gone, "query": "hello"})
                assert reply.status_code == 200, reply.text
        lines = _lines_until(ops_stack, lambda lines: f"{series} 1.0" in lines)
        assert f"{series} 1.0" in lines
    lines = _lines_until(ops_stack, lambda lines: not any(s.startswith(series) for s in lines))
    assert [line for line in lines if line.startswith(series)] == []
    assert f"{series} 0.0" not in lines


def test_calls_waiting_for_a_models_slot_show_in_the_scrape(ops_stack: Stack) -> None:
    # Only latency and 429s showed a model's queue, after the fact. The model runs one call
    # at once in the stack (its two gateway processes share the slot and the queue): a stream
    # holds the slot, a call waits behind it, in whichever process Envoy sent it to, and the
    # scrape adds the processes' gauges up.
    series = f'saxgw_model_calls_queued{{gen_ai_request_model="{QUEUED}"}}'
    slow = {"text": "w " * 100, "delay_ms": "100"}  # 10 s: held until the test lets go
    body = json.dumps({"model": QUEUED, "query": "hi"}).encode()
    url = httpx.URL(ops_stack.http_url)
    with (
        published(ops_stack, QUEUED, TEST_LM, slow, headers=AUTH),
        httpx.Client(base_url=ops_stack.http_url, headers=AUTH, timeout=30) as http,
    ):
        stream = {"model": QUEUED, "query": "hi"}
        with http.stream("POST", "/generate_stream", json=stream) as held:
            assert held.status_code == 200
            # Its first event: it runs, in the model's one slot. (The iterator is kept: once
            # collected, it closed the response, and the stream was cancelled.)
            events = held.iter_raw()
            assert next(events)
            # A call that waits, over a socket of its own: the test closes it (its client
            # leaves, as one that gives up on a busy model).
            with socket.create_connection((url.host, url.port), timeout=30) as waiting:
                waiting.sendall(
                    b"POST /generate HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (url.host.encode(), KEY.encode(), len(body), body)
                )
                lines = _lines_until(ops_stack, lambda lines: f"{series} 1.0" in lines)
                assert f"{series} 1.0" in lines
            lines = _lines_until(ops_stack, lambda lines: f"{series} 0.0" in lines)
            assert f"{series} 0.0" in lines
    # Unpublished: every process that saw the model drops its series (NaN, left out of the
    # sum), so it is neither 0 nor NaN in the scrape.
    lines = _lines_until(ops_stack, lambda lines: not any(s.startswith(series) for s in lines))
    assert [line for line in lines if line.startswith(series)] == []


def test_a_published_model_has_its_replicas_series_before_any_call(
    stack: Stack, ops_stack: Stack
) -> None:
    # Published elsewhere (the session stack's gateway) and never called through this one:
    # its gateway processes had it in no address table, so it had no series, as every model
    # had none after a gateway restarted, until its first call. The replicas panel was
    # empty and an alert on `saxgw_model_replicas == 0` could not fire for it. The health
    # probe lists the cell every few seconds; that listing gives it its series.
    model = f"/sax/test/listed-{secrets.token_hex(3)}"
    series = f'saxgw_model_replicas{{gen_ai_request_model="{model}"}}'
    with published(stack, model, TEST_LM):
        lines = _lines_until(ops_stack, lambda lines: f"{series} 1.0" in lines, timeout=12)
        assert f"{series} 1.0" in lines
    # Unpublished: the listing no longer has it, and its series leaves the scrape.
    lines = _lines_until(ops_stack, lambda ls: not any(x.startswith(series) for x in ls), 12)
    assert [line for line in lines if line.startswith(series)] == []


def test_a_call_without_its_request_message_is_counted(ops_stack: Stack) -> None:
    # A grpc-web POST with an empty body (or a frame cut short, or a gRPC client that
    # half-closes at once) is the gateway's INVALID_ARGUMENT, as Envoy's access log says
    # (grpc_status 3), but was answered outside the telemetry: no count, no duration, so the
    # dashboard's errors by code and error ratio never showed such a broken client.
    web = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **AUTH}
    requests, duration = "saxgw_requests_total", "gen_ai_server_request_duration_seconds_count"
    counted = {
        method: {"grpc_method": method, "grpc_code": "INVALID_ARGUMENT", "client": "team-a"}
        for method in ("Generate", "GenerateStream")
    }
    timed = {
        operation: {
            "gen_ai_operation_name": operation,
            "gen_ai_request_model": "unknown",
            "error_type": "INVALID_ARGUMENT",
        }
        for operation in ("lm.generate", "lm.generate_stream")
    }
    before = _scrape_until(ops_stack, lambda s: True)

    def added(samples: Samples, name: str, labels: dict[str, str]) -> float:
        return _value(samples, name, **labels) - _value(before, name, **labels)

    with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
        for method in counted:
            reply = http.post(f"{SERVICE}/{method}", content=b"", headers=web)
            assert (reply.status_code, reply.headers["grpc-status"]) == (200, "3"), reply.headers
    samples = _scrape_until(
        ops_stack,
        lambda s: (
            all(added(s, requests, labels) >= 1 for labels in counted.values())
            and all(added(s, duration, labels) >= 1 for labels in timed.values())
        ),
        timeout=5,
    )
    assert {m: added(samples, requests, labels) for m, labels in counted.items()} == {
        "Generate": 1,
        "GenerateStream": 1,
    }
    assert {op: added(samples, duration, labels) for op, labels in timed.items()} == {
        "lm.generate": 1,
        "lm.generate_stream": 1,
    }
