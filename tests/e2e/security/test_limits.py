"""The config file's stream-duration, request-time, connection-count and connection-age limits,
through the real Envoy.

`saxgw serve --config FILE` (the real CLI: one loader, the gateway process and Envoy both
configured from the file) fronts the secure stack's cell with tight limits; the model it calls
is published there and answers slowly.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.processes import ProcessGroup, free_port
from tests._grpc import sync_channel
from tests._stacks import tail_logs
from tests.e2e._published import request_info
from tests.e2e.security.conftest import SecureStack

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/sec-limits"
MAX_STREAM_DURATION = 2  # seconds
# Seconds to send a whole request. Shorter than the calls below that last MAX_STREAM_DURATION,
# whose replies must not be cut by it: their request has arrived (a unary call's 504 JSON and a
# stream's in-band error come from the gateway, at MAX_STREAM_DURATION).
REQUEST_TIMEOUT = 1
MAX_CONNECTIONS = 4
MAX_CONNECTION_DURATION = 1  # seconds
# 20 tokens, 0.35 s each: 7 s, past the connection's limit and Envoy's 5 s drain after it.
STEADY = {"text": " ".join(f"s{i}" for i in range(20)), "delay_ms": "350"}
# 40 tokens, 0.3 s each: 12 s, far past the limit.
SLOW = {"text": " ".join(f"t{i}" for i in range(40)), "delay_ms": "300"}


@dataclass(frozen=True)
class Front:
    port: int
    admin: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stat(self, name: str) -> int:
        """One counter or gauge from Envoy's admin (0 when Envoy has not made it yet)."""
        url = f"http://127.0.0.1:{self.admin}/stats?filter=^{name}$"
        with urllib.request.urlopen(url, timeout=10) as response:
            text: str = response.read().decode()
        return sum(int(line.rpartition(":")[2]) for line in text.splitlines() if line)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def front(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    limits = {
        "max_stream_duration": MAX_STREAM_DURATION,
        "max_connections": MAX_CONNECTIONS,
        "request_timeout": REQUEST_TIMEOUT,
    }
    yield from _serve(secure, tmp_path_factory.mktemp("limits"), limits)


@pytest.fixture(scope="module")
def recycling(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    limits = {"max_connection_duration": MAX_CONNECTION_DURATION}
    yield from _serve(secure, tmp_path_factory.mktemp("recycling"), limits)


def _serve(secure: SecureStack, base: Path, limits: Mapping[str, float]) -> Iterator[Front]:
    """`saxgw serve` with ``limits`` in its config file, in front of the secure stack's cell."""
    config = base / "limits.yaml"
    config.write_text(yaml.safe_dump({"limits": limits}))
    front = Front(port=free_port(), admin=free_port())
    argv = [
        *(sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)),
        *("--sax-root", secure.stack.settings.sax_root, "--port", str(front.port)),
        *("--envoy-admin-port", str(front.admin), "--gateway-ports", str(free_port())),
        *("--log-dir", str(base), "--ops-port", "0"),  # not the default 8889 others may hold
    ]
    group = ProcessGroup()
    try:
        group.start("serve", argv, log_path=str(base / "serve.log"))
        try:
            group.wait_until("serve", lambda: _healthy(front.url), 60)
        except Exception:
            pytest.fail("saxgw serve never became healthy; logs:\n" + tail_logs(base))
        yield front
    finally:
        group.stop()


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, SLOW) as name:
        yield name


def test_unary_call_past_the_limit_is_504_json(front: Front, model: str) -> None:
    with httpx.Client(base_url=front.url, timeout=60) as http:
        response = http.post("/generate", json={"model": model, "query": "q"})
    assert response.status_code == 504, response.text
    assert response.headers["content-type"] == "application/json"
    # The gateway's own error (DEADLINE_EXCEEDED), not Envoy's backstop.
    assert response.json() == {
        "code": 4,
        "message": f"call to {model} exceeded its deadline",
        "details": [request_info(response)],
    }


def test_sse_stream_past_the_limit_ends_with_an_in_band_json_error(
    front: Front, model: str
) -> None:
    body = {"model": model, "query": "q"}
    with (
        httpx.Client(base_url=front.url, timeout=60) as http,
        http.stream("POST", "/generate_stream", json=body) as stream,
    ):
        assert stream.status_code == 200
        events = [line[5:] for line in stream.iter_lines() if line.startswith("data:")]
    deltas, last = events[:-1], httpx.Response(200, content=events[-1]).json()
    assert deltas, "the stream ended before its first token"
    assert len(deltas) < len(SLOW["text"].split())  # cut short, not finished
    assert last["done"] is True
    assert last["error"]["code"] == 4
    assert last["error"]["message"] == f"call to {model} exceeded its deadline"


def test_grpc_stream_past_the_limit_is_deadline_exceeded(front: Front, model: str) -> None:
    received = 0
    with sync_channel(f"127.0.0.1:{front.port}") as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        stream = stub.GenerateStream(pb.GenerateStreamRequest(model=model, query="q"), timeout=60)
        with pytest.raises(grpc.RpcError) as caught:
            for reply in stream:
                received += len(reply.deltas)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == f"call to {model} exceeded its deadline"
    assert 0 < received < len(SLOW["text"].split())


def test_envoy_resets_a_stream_the_gateway_does_not_bound(front: Front, model: str) -> None:
    # WatchAddresses runs until the caller leaves; Envoy ends it after the limit and its
    # backstop margin.
    before = front.stat("http.ingress_http.downstream_rq_max_duration_reached")
    with sync_channel(f"127.0.0.1:{front.port}") as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        watch = stub.WatchAddresses(pb.WatchAddressesRequest(model=model), timeout=60)
        with pytest.raises(grpc.RpcError) as caught:
            for reply in watch:
                assert reply.addresses
    # Envoy resets the HTTP/2 stream; grpcio reports a reset as INTERNAL.
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "RST_STREAM" in str(caught.value.details())
    assert front.stat("http.ingress_http.downstream_rq_max_duration_reached") == before + 1


def test_a_connection_past_its_age_makes_way_for_another_without_failing_a_call(
    recycling: Front, secure: SecureStack
) -> None:
    # A gRPC client keeps one connection, which a layer-4 balancer never moves: past
    # limits.max_connection_duration Envoy sends it GOAWAY, and grpcio opens another for its
    # next call, while the stream already open on the old one runs to its end.
    aged = "http.ingress_http.downstream_cx_max_duration_reached"
    before = recycling.stat(aged)
    with (
        secure.published(f"{MODEL}-steady", STEADY) as steady,
        secure.published(f"{MODEL}-quick") as quick,
        sync_channel(f"127.0.0.1:{recycling.port}") as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        stream = stub.GenerateStream(pb.GenerateStreamRequest(model=steady, query="q"), timeout=60)
        texts, tokens, answered = [], 0, 0
        for reply in stream:
            if reply.done:
                texts = [t.text for t in reply.texts]
                break
            tokens += 1
            # Between two tokens, a unary call on the same channel, on a new connection
            # once the first has aged.
            answer = stub.Generate(pb.GenerateRequest(model=quick, query="hi"), timeout=10)
            answered += bool(answer.texts)
        assert [t.split() for t in texts] == [STEADY["text"].split()]  # all of it, not cut
        assert answered == tokens > 0
        with httpx.Client(base_url=recycling.url, timeout=10) as http:
            closes = []
            ends = time.monotonic() + 3 * MAX_CONNECTION_DURATION
            while time.monotonic() < ends:
                response = http.post("/generate", json={"model": quick, "query": "hi"})
                assert response.status_code == 200, response.text
                closes.append(response.headers.get("connection") == "close")
                time.sleep(0.05)
    assert any(closes)  # an HTTP/1.1 keep-alive connection past its age closes after a reply
    assert recycling.stat(aged) >= before + 2


def _get(sock: socket.socket) -> bytes:
    """One keep-alive ``GET /`` on ``sock``; what came back (b"" if the peer closed)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_connections_beyond_the_limit_are_closed(front: Front) -> None:
    active = "http.ingress_http.downstream_cx_active"
    _wait(lambda: front.stat(active) == 0, "earlier tests' connections never closed")
    overflow = f"listener.127.0.0.1_{front.port}.downstream_global_cx_overflow"
    before = front.stat(overflow)
    held = [socket.create_connection(("127.0.0.1", front.port), timeout=10)]
    try:
        for _ in range(MAX_CONNECTIONS - 1):
            held.append(socket.create_connection(("127.0.0.1", front.port), timeout=10))
        for sock in held:
            assert _get(sock).startswith(b"HTTP/1.1 200 OK")
        # One more: accepted by the kernel, closed by Envoy before it reads a byte.
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as extra:
            assert _get(extra) == b""
        # Counted by the worker that refused it, which may come after the close is seen here
        # (it failed once under a full suite's load).
        _wait(lambda: front.stat(overflow) == before + 1, "the refusal was not counted")
        # The open connections keep working.
        assert all(_get(sock).startswith(b"HTTP/1.1 200 OK") for sock in held)
        held.pop().close()

        def one_more_is_served() -> bool:
            with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
                return _get(sock).startswith(b"HTTP/1.1 200 OK")

        _wait(one_more_is_served, "a connection was refused after one closed")
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    "path",
    [
        "/generate",
        "/generate_stream",
        "/watch",
        "/v1/sax/test/x:streamGenerate",
        "/v1/sax/test/x:watch",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/responses",
    ],
)
def test_a_body_that_stops_coming_is_408_on_every_route(front: Front, path: str) -> None:
    # Slowloris: a body declared and never sent. The streams' routes set their own idle
    # timeout (an hour; none for the watches), which replaced the stream idle timeout (300 s)
    # from the request's headers on: such a request stayed open for the stream duration limit.
    # `limits.request_timeout` bounds the whole request on every route.
    active = "http.ingress_http.downstream_cx_active"
    _wait(lambda: front.stat(active) < MAX_CONNECTIONS, "earlier tests' connections never closed")
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", "100000")
        connection.endheaders(b"{")
        start = time.monotonic()
        reply = connection.getresponse()
        waited = time.monotonic() - start
        body = json.loads(reply.read())
    finally:
        connection.close()
    assert reply.status == 408, body
    assert reply.getheader("content-type") == "application/json"
    assert REQUEST_TIMEOUT - 0.2 < waited < REQUEST_TIMEOUT + 10
    if path.startswith("/v1/sax/") or not path.startswith("/v1/"):
        assert (body["code"], body["message"]) == (4, "request timeout")
    else:  # OpenAI's envelope
        assert body["error"]["message"] == "request timeout", body
