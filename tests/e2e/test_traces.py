"""Traces of calls that begin or end out of the ordinary, in a real OTLP receiver: a caller's
traceparent that does not parse (W3C Trace Context: the receiver starts a new trace) and a
call its client gave up (CANCELLED, on Envoy's span as on the gateway's).

A small stack (one gateway process and Envoy, both tracing) runs in front of the session
stack's cell; tests/e2e/test_operate.py has the traces of ordinary calls.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli.main import main as saxgw_main
from gateway.config import TelemetrySettings
from gateway.launch.envoy import envoy_binary
from gateway.launch.processes import free_port
from gateway.launch.stack import SPAN_FLUSH_WAIT, Stack, StackSettings, health_answers
from gateway.service.args import gateway_argv
from tests._grpc import sync_channel
from tests._otlp import Receiver, attributes
from tests._stacks import FORWARDED, envoy_stat, loopback_envoy, wait_forwarded
from tests.e2e._access_log import access_log_line
from tests.e2e._published import TEST_LM, published
from tests.e2e.security._credentials import CertificateAuthority

pytestmark = pytest.mark.e2e

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
ENVOY = "sax-gateway-envoy"
GATEWAY = "sax-gateway"
Spans = list[trace_pb2.Span]


@pytest.fixture(scope="module")
def traced(
    stack: Stack, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # A collector with a path (as an OTLP/HTTP traces URL has), and no scheme: Envoy's exporter
    # made the path part of its gRPC target, and so did the gateway's without a scheme, so
    # that every export failed, and the spans were lost without a word.
    endpoint = receiver.endpoint.removeprefix("http://")
    assert endpoint != receiver.endpoint
    telemetry = TelemetrySettings(otlp_endpoint=f"{endpoint}/v1/traces")
    settings = StackSettings(
        gateway=dataclasses.replace(stack.settings.gateway, telemetry=telemetry),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(otlp_timeout=4.0),  # the test of a hung collector waits it out
        log_dir=str(tmp_path_factory.mktemp("traced")),
    )
    with Stack(settings) as running:
        assert running.wait_healthy(timeout=60), "the traced stack never became healthy"
        yield running


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, "/sax/test/traced", TEST_LM, {"text": "hello world"}) as name:
        yield name


@pytest.fixture(scope="module")
def slow_model(stack: Stack) -> Iterator[str]:
    """50 tokens, 0.1 s apart: a call the client gives up is still running."""
    overrides = {"text": " ".join(["tok"] * 50), "delay_ms": "100"}
    with published(stack, "/sax/test/traced-slow", TEST_LM, overrides) as name:
        yield name


def _envoy_and_server(receiver: Receiver) -> Callable[[Spans], bool]:
    """Whether ``spans`` hold Envoy's span and the gateway's server span (the gateway's client
    spans end first, and can go out in an earlier batch)."""
    return lambda spans: (
        any(receiver.service(s) == ENVOY for s in spans)
        and any(s.kind == SERVER and receiver.service(s) == GATEWAY for s in spans)
    )


def _split(receiver: Receiver, spans: Spans) -> tuple[trace_pb2.Span, trace_pb2.Span]:
    [envoy] = [s for s in spans if receiver.service(s) == ENVOY]
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == GATEWAY]
    return envoy, server


TRACE = secrets.token_hex(16)
PARENT = secrets.token_hex(8)


@pytest.mark.parametrize(
    "traceparent",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param(f"00-{TRACE}-{PARENT}", id="no-flags"),
        pytest.param(f"00-{TRACE[:-1]}-{PARENT}0-01", id="misplaced-dash"),
        pytest.param(f"00-{TRACE}-{PARENT}-01-00", id="version-00-with-more"),
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", id="zero-parent-id"),
        # Envoy's own parser takes these two, which W3C's grammar refuses (ff is the one
        # invalid version; hex is lower case), and continued the caller's trace.
        pytest.param(f"ff-{TRACE}-{PARENT}-01", id="version-ff"),
        pytest.param(f"00-{TRACE.upper()}-{PARENT.upper()}-01", id="upper-case"),
        # Two, each valid: Envoy followed the first.
        pytest.param((f"00-{TRACE}-{PARENT}-01", f"00-{TRACE[::-1]}-{PARENT}-01"), id="twice"),
    ],
)
def test_a_traceparent_that_does_not_parse_starts_a_new_trace(
    traced: Stack, receiver: Receiver, model: str, traceparent: str | tuple[str, str]
) -> None:
    # Envoy started no span for a traceparent it could not parse, and passed the header on
    # to the gateway, whose span then began a trace of its own: Envoy's part of the request
    # was in no trace at all.
    request_id = str(uuid.uuid4())
    sent_traceparents = (traceparent,) if isinstance(traceparent, str) else traceparent
    headers = [
        ("x-request-id", request_id),
        *(("traceparent", value) for value in sent_traceparents),
        ("tracestate", "v=stale"),
    ]
    reply = httpx.post(
        f"{traced.http_url}/generate",
        json={"model": model, "query": "hello"},
        headers=headers,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    # The traceparent Envoy sent the gateway: its own span's, in a new trace, sampled (the
    # stack's sample ratio is 1).
    sent = str(access_log_line(traced, request_id)["traceparent"])
    assert re.fullmatch("00-[0-9a-f]{32}-[0-9a-f]{16}-01", sent), sent
    trace = bytes.fromhex(sent.split("-")[1])
    assert trace.hex() not in (TRACE, TRACE[::-1], "0" * 32)
    spans = receiver.wait_until(
        trace,
        lambda spans: (
            _envoy_and_server(receiver)(spans) and "sax lm.Generate" in {s.name for s in spans}
        ),
    )
    envoy, server = _split(receiver, spans)
    assert envoy.parent_span_id == b""  # the root: no caller's span
    assert sent.split("-")[2] == envoy.span_id.hex()
    assert attributes(envoy)["guid:x-request-id"] == request_id
    assert server.name == "saxgateway.v1.SaxGateway/Generate"
    assert server.parent_span_id == envoy.span_id
    assert attributes(server)["saxgw.request_id"] == request_id
    assert all(s.parent_span_id == server.span_id for s in spans if s.kind == CLIENT)
    # A tracestate belongs to the traceparent it came with (W3C: deleted with it).
    assert {s.trace_state for s in spans} == {""}


def test_a_later_versions_traceparent_is_followed_as_version_00(
    traced: Stack, receiver: Receiver, model: str
) -> None:
    # W3C: a receiver reads a version it does not know as 00 (fields after the flags, if any,
    # left out). Envoy refused the header for its length (it started no span, as for a
    # malformed one); now it gets the first 55 characters, and the tracestate stays.
    trace, caller = secrets.token_bytes(16), secrets.token_bytes(8)
    traceparent = f"cc-{trace.hex()}-{caller.hex()}-01-what-the-future-will-be-like"
    reply = httpx.post(
        f"{traced.http_url}/generate",
        json={"model": model, "query": "hello"},
        headers={"traceparent": traceparent, "tracestate": "v=1"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    envoy, server = _split(receiver, receiver.wait_until(trace, _envoy_and_server(receiver)))
    assert envoy.parent_span_id == caller
    assert server.parent_span_id == envoy.span_id
    assert (envoy.trace_state, server.trace_state) == ("v=1", "v=1")


def _traceparent() -> tuple[bytes, str]:
    trace = secrets.token_bytes(16)
    return trace, f"00-{trace.hex()}-{secrets.token_bytes(8).hex()}-01"


def test_envoys_span_is_named_after_the_method_the_request_ran(
    traced: Stack, receiver: Receiver, model: str
) -> None:
    # Envoy named every span "ingress": a trace viewer could not tell its spans of a /generate
    # from those of a chat completion, nor list or filter them by method. Now each is named
    # as the gateway's span of the call is; a path that names no method, by its HTTP method
    # alone (a scanner's paths would each have been a span name).
    calls = [
        ("POST", "/generate", {"model": model, "query": "hi"}, "saxgateway.v1.SaxGateway/Generate"),
        ("GET", "/v1/models", None, "saxgateway.v1.OpenAIGateway/ListOpenAIModels"),
        ("GET", "/openapi.json", None, "/openapi.json"),
        ("GET", f"/no/such/path/{secrets.token_hex(4)}?key=secret", None, "GET"),
        ("POST", "/saxgateway.v1.SaxGateway/NoSuchMethod", {}, "POST"),
    ]
    traces = []
    for method, path, body, name in calls:
        trace, traceparent = _traceparent()
        headers = {"traceparent": traceparent}
        httpx.request(method, traced.http_url + path, json=body, headers=headers, timeout=30)
        traces.append((trace, path, name))
    # A gRPC call's span is its method's too, as the gateway's span of it is named.
    trace, traceparent = _traceparent()
    with sync_channel(traced.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        stub.GetInfo(pb.GetInfoRequest(), metadata=(("traceparent", traceparent),), timeout=30)
        traces.append((trace, "GetInfo", "saxgateway.v1.SaxGateway/GetInfo"))
        # Health's List too, which was named POST, as a path of no method.
        trace, traceparent = _traceparent()
        health = health_pb2_grpc.HealthStub(channel)
        health.List(
            health_pb2.HealthListRequest(), metadata=(("traceparent", traceparent),), timeout=30
        )
        traces.append((trace, "List", "grpc.health.v1.Health/List"))
    for trace, path, name in traces:
        spans = receiver.wait_until(
            trace, lambda spans: any(receiver.service(s) == ENVOY for s in spans)
        )
        assert [s.name for s in spans if receiver.service(s) == ENVOY] == [name], path


def _close_an_sse_stream(traced: Stack, model: str, headers: dict[str, str]) -> None:
    with (
        httpx.Client(base_url=traced.http_url, headers=headers, timeout=30) as http,
        http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as reply,
    ):
        assert reply.status_code == 200
        assert next(line for line in reply.iter_lines() if line.startswith("data:"))


def _give_up_an_http_call(traced: Stack, model: str, headers: dict[str, str]) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{traced.http_url}/generate",
            json={"model": model, "query": "q"},
            headers=headers,
            timeout=httpx.Timeout(30, read=0.5),
        )


def _cancel_a_grpc_stream(traced: Stack, model: str, headers: dict[str, str]) -> None:
    with sync_channel(traced.grpc_address) as channel:
        call = gateway_pb2_grpc.SaxGatewayStub(channel).GenerateStream(
            pb.GenerateStreamRequest(model=model, query="q"),
            metadata=tuple(headers.items()),
            timeout=30,
        )
        assert next(call).deltas[0].text == "tok"
        call.cancel()


def _cancel_a_grpc_call(traced: Stack, model: str, headers: dict[str, str]) -> None:
    forwarded = envoy_stat(traced, FORWARDED)
    with sync_channel(traced.grpc_address) as channel:
        call = gateway_pb2_grpc.SaxGatewayStub(channel).Generate.future(
            pb.GenerateRequest(model=model, query="q"), metadata=tuple(headers.items()), timeout=30
        )
        wait_forwarded(traced, forwarded)  # with the gateway, which takes 5 s to answer
        assert call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED


@pytest.mark.parametrize(
    ("give_up", "status"),
    [
        pytest.param(_close_an_sse_stream, 200, id="sse-stream"),
        pytest.param(_give_up_an_http_call, 0, id="http-call"),
        pytest.param(_cancel_a_grpc_stream, 200, id="grpc-stream"),
        pytest.param(_cancel_a_grpc_call, 0, id="grpc-call"),
    ],
)
def test_envoys_span_of_a_call_the_client_gave_up_says_cancelled(
    traced: Stack,
    receiver: Receiver,
    slow_model: str,
    give_up: Callable[[Stack, str, dict[str, str]], None],
    status: int,
) -> None:
    # Envoy's span of such a call had no grpc.status_code at all (no reply trailers to read
    # it from), where every other span had one, and the access log and the gateway's span
    # said CANCELLED.
    trace, traceparent = _traceparent()
    request_id = str(uuid.uuid4())
    give_up(traced, slow_model, {"traceparent": traceparent, "x-request-id": request_id})
    line = access_log_line(traced, request_id)
    assert (line["status"], line["grpc_status"]) == (status, 1), line
    envoy, server = _split(receiver, receiver.wait_until(trace, _envoy_and_server(receiver)))
    assert attributes(envoy)["grpc.status_code"] == "1"
    assert attributes(server)["rpc.grpc.status_code"] == 1
    assert attributes(server)["error.type"] == "CANCELLED"
    assert server.parent_span_id == envoy.span_id


def test_a_gateway_log_line_of_a_traced_call_names_its_trace_and_span(
    traced: Stack, receiver: Receiver
) -> None:
    # Gateway log lines carried the call's request ID only: going from a trace to the lines
    # logged while serving it meant a detour through the span's saxgw.request_id.
    trace, traceparent = _traceparent()
    # The first call naming a cell that does not exist is an INFO line (then one a minute):
    # no other test calls this module's stack so.
    cell = f"nocell{secrets.token_hex(4)}"
    request_id = str(uuid.uuid4())
    reply = httpx.post(
        f"{traced.http_url}/generate",
        json={"model": f"/sax/{cell}/lm", "query": "hello"},
        headers={"traceparent": traceparent, "x-request-id": request_id},
        timeout=30,
    )
    assert reply.status_code == 404, reply.text
    _, server = _split(receiver, receiver.wait_until(trace, _envoy_and_server(receiver)))
    line = _gateway_log_line(traced, request_id)
    assert str(line["message"]).startswith("calls name cells that do not exist under"), line
    assert (line["request_id"], line["trace_id"], line["span_id"]) == (
        request_id,
        trace.hex(),
        server.span_id.hex(),
    )
    assert line["level"] == "INFO"


def test_spans_reach_a_tls_collector_that_wants_a_key_from_envoy_and_the_gateway(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A hosted collector: TLS, and a key in the export's metadata. Envoy's exporter spoke
    # plaintext and sent no headers, so its spans were lost; the gateway's could only check
    # the collector against the system's roots.
    ca = CertificateAuthority.generate()
    directory = tmp_path_factory.mktemp("tls-otlp")
    roots = directory / "ca.pem"
    roots.write_bytes(ca.pem())
    key = ("x-collector-key", f"k-{secrets.token_hex(8)}")
    receiver = Receiver(tls=ca.issue("collector", server=True), key=key)
    receiver.start()
    telemetry = TelemetrySettings(
        otlp_endpoint=receiver.endpoint, otlp_certificate=str(roots), otlp_headers=(key,)
    )
    settings = StackSettings(
        gateway=dataclasses.replace(stack.settings.gateway, telemetry=telemetry),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(directory),
    )
    try:
        with Stack(settings) as running:
            assert running.wait_healthy(timeout=60), "the stack never became healthy"
            trace, traceparent = _traceparent()
            reply = httpx.get(
                f"{running.http_url}/listcells", headers={"traceparent": traceparent}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            spans = receiver.wait_until(trace, _envoy_and_server(receiver))
            envoy, server = _split(receiver, spans)
            # The CA file replaced or gone: a gateway and an Envoy the supervisor starts
            # again use the CA read at start. Both refused to start without the file (the
            # gateway `--otlp-certificate: cannot read`, Envoy `Invalid path`): the worker
            # stayed down, or the public port with it, for the sake of spans.
            roots.unlink()
            ready = {
                "gateway-0": partial(health_answers, running.gateway_addresses[0]),
                "envoy": partial(running.wait_healthy, timeout=0),
            }
            for name, answers in ready.items():
                dying = dict(running.group.children)[name]
                dying.kill()
                dying.wait()
                running.group.restart(name)  # as the supervisor does
                running.group.wait_until(name, answers, 30)
            trace, traceparent = _traceparent()
            reply = httpx.get(
                f"{running.http_url}/listcells", headers={"traceparent": traceparent}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            _split(receiver, receiver.wait_until(trace, _envoy_and_server(receiver)))
    finally:
        receiver.stop()
    assert server.parent_span_id == envoy.span_id
    assert server.name == "saxgateway.v1.SaxGateway/ListCells"
    # The key reached the gateways through their environment, not their command line.
    assert key[1] not in " ".join(gateway_argv(settings.gateway))


def _gateway_log_line(stack: Stack, marker: str, timeout: float = 10.0) -> dict[str, object]:
    """The one JSON line of gateway-0's log that contains ``marker`` (a request ID)."""
    log = Path(stack.settings.log_dir or "") / "gateway-0.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(t) for t in log.read_text().splitlines() if marker in t]
        if lines or time.monotonic() > deadline:
            [line] = lines
            return dict(line)
        time.sleep(0.1)


def test_envoy_gives_up_an_export_the_collector_never_answers(
    traced: Stack, receiver: Receiver
) -> None:
    # Envoy's tracer sent each batch with no deadline (it reads no GrpcService.timeout): a
    # collector that took batches and never answered (hung, stopped, blackholed) had every
    # export held open in Envoy with its spans, about 4 KB a traced request, for as long as it
    # stayed so; a quarter of an hour of it is gigabytes. (Envoy waits 10 s by default.)
    exports = "grpc.otlp.streams_total"
    ended = "grpc.otlp.streams_closed_[0-9]+"
    with receiver.hung():
        before = envoy_stat(traced, exports)
        with httpx.Client(base_url=traced.http_url, timeout=30) as http:
            for _ in range(10):  # Envoy sends its spans 5 at a time
                assert http.get("/listcells").status_code == 200
        deadline = time.monotonic() + traced.envoy.otlp_timeout + 3
        while envoy_stat(traced, exports) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = envoy_stat(traced, exports)
        assert sent > before, "Envoy sent no spans"
        while envoy_stat(traced, ended) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        # At least as many ended as had begun: one more may begin, and end, between the two
        # reads (22 ended of 21 begun, once, in a fresh clone's run). Without a deadline none
        # to the hung collector ever ends, so the count stays below.
        assert envoy_stat(traced, ended) >= sent, "exports still open past their deadline"


def test_envoys_spans_of_the_last_calls_are_sent_before_the_stack_stops(
    traced: Stack, receiver: Receiver, model: str, slow_model: str, tmp_path: Path
) -> None:
    # Envoy buffers its spans and sent them every 5 s, and drops what it holds at exit: the
    # spans of the calls in the last seconds before every stop were lost, the gateways' sent,
    # and so were those of the streams the stop itself ended, which end as the gateways exit.
    # A stack of its own, since it stops; as the module's, on other ports, with a short grace.
    gateway = dataclasses.replace(traced.settings.gateway, grace_period=1.0)
    settings = dataclasses.replace(
        traced.settings,
        gateway=gateway,
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(tmp_path),
    )
    unary, unary_parent = _traceparent()
    streamed, stream_parent = _traceparent()
    started = threading.Event()
    last: list[str] = []

    def stream(url: str) -> None:
        body = {"model": slow_model, "query": "q"}  # 5 s: the stop ends it
        headers = {"traceparent": stream_parent}
        with (
            httpx.Client(base_url=url, timeout=30) as http,
            http.stream("POST", "/generate_stream", json=body, headers=headers) as reply,
        ):
            for line in reply.iter_lines():
                started.set()
                last.append(line)

    with Stack(settings) as stopped:
        assert stopped.wait_healthy(timeout=60), "the stack never became healthy"
        reply = httpx.post(
            f"{stopped.http_url}/generate",
            json={"model": model, "query": "hello"},
            headers={"traceparent": unary_parent},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        streaming = threading.Thread(target=stream, args=(stopped.http_url,))
        streaming.start()
        assert started.wait(30)
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    streaming.join(10)
    assert '"error":{"code":14' in [line for line in last if line][-1]  # ended by the stop
    for trace in (unary, streamed):
        # Everything is stopped: the spans are in, or never will be; the wait returns once they
        # are, so its bound (2 s before) only guards against a hang.
        spans = receiver.wait_until(trace, _envoy_and_server(receiver), timeout=10)
        assert {receiver.service(s) for s in spans} == {ENVOY, GATEWAY}
        envoy, server = _split(receiver, spans)
        assert server.parent_span_id == envoy.span_id
    assert took < 5  # no wait for Envoy's old 5 s flush


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_envoy_in_its_container_script_sends_the_spans_of_the_calls_its_drain_waited_for(
    traced: Stack, receiver: Receiver, slow_model: str, tmp_path: Path
) -> None:
    # run-envoy.sh (the containers' Envoy) stopped Envoy as soon as its drain found no request
    # active, which it checks every 0.5 s: a call that ended within Envoy's flush interval
    # (250 ms) before that check lost its span. Here the call ends mid-drain, and Envoy is run
    # as envoy-config writes it, in front of the module's gateway.
    port, admin = free_port(), free_port()
    gateway = f"127.0.0.1:{traced.settings.gateway_ports[0]}"
    flags = ["--port", str(port), "--admin-port", str(admin), "--listen", "127.0.0.1"]
    written = ["--gateway", gateway, "--out", str(tmp_path), "--otlp-endpoint", receiver.endpoint]
    assert saxgw_main(["envoy-config", *written, *flags]) == 0
    envoy = [str(envoy_binary()), "-c", str(tmp_path / "envoy.yaml"), "--disable-hot-restart"]
    script = ["bash", str(tmp_path / "run-envoy.sh"), str(admin), "20", *envoy]
    run = subprocess.Popen(script, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/healthz") and time.monotonic() < deadline:
            time.sleep(0.1)
        trace, traceparent = _traceparent()
        body = {"model": slow_model, "query": "q"}  # 5 s: the client ends it first
        with (
            httpx.Client(base_url=url, timeout=30) as http,
            http.stream(
                "POST", "/generate_stream", json=body, headers={"traceparent": traceparent}
            ) as reply,
        ):
            assert next(line for line in reply.iter_lines() if line.startswith("data:"))
            run.send_signal(signal.SIGTERM)  # the drain lets the stream go on
            time.sleep(0.9)  # ends just before the drain's first count (after 1 s)
        ended = time.monotonic()
        assert run.wait(timeout=30) == 0
        assert time.monotonic() - ended >= SPAN_FLUSH_WAIT
    finally:
        run.kill()
    spans = receiver.wait_until(trace, _envoy_and_server(receiver), timeout=5)
    assert {receiver.service(s) for s in spans} == {ENVOY, GATEWAY}
