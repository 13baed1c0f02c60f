"""What an HTTP/JSON reply's headers say: nothing of the gRPC hop behind it (grpc-status,
grpc-message, grpc-accept-encoding: the status is the HTTP status and the JSON body's code),
and no `server: envoy` or other header that names Envoy. gRPC clients through the same port
still get their status."""

from __future__ import annotations

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.edge._envoy import GRPC_ONLY_HEADERS
from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, published

# x-envoy-upstream-service-time: Envoy's router timing, which names Envoy as `server` would.
HIDDEN = {*GRPC_ONLY_HEADERS, "server", "x-envoy-upstream-service-time"}


def _hidden(response: httpx.Response) -> set[str]:
    return HIDDEN & {name.lower() for name in response.headers}


def test_http_json_replies_carry_no_grpc_headers(stack: Stack, http: httpx.Client) -> None:
    with published(stack, "/sax/test/headers", TEST_LM, {"text": "a b"}) as model:
        ok = http.post("/generate", json={"model": model, "query": "q"})
        with http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as sse:
            events = [line for line in sse.iter_lines() if line.startswith("data:")]
        completion = http.post("/v1/completions", json={"model": model, "prompt": "q"})
    missing = http.post("/generate", json={"model": "/sax/test/nope", "query": "q"})
    document = http.get("/openapi.json")
    assert ok.status_code == 200 and ok.json() == {"texts": [{"text": "a b", "score": -0.2}]}
    assert sse.status_code == 200 and len(events) == 3, events
    assert completion.status_code == 200, completion.text
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert document.status_code == 200
    for response in (ok, sse, completion, missing, document):
        assert _hidden(response) == set(), (response.request.url, dict(response.headers))
    # What /healthz says of Envoy: the one header an Envoy health checker in front compares
    # (docs/security.md, which said no reply named Envoy).
    health = http.get("/healthz")
    envoys = {k: v for k, v in health.headers.items() if k.startswith("x-envoy") or k == "server"}
    assert health.status_code == 200 and envoys == {
        "x-envoy-upstream-healthchecked-cluster": "saxgw"
    }


# What every SSE reply says to the proxies and caches on its way (docs/deploy.md): without the
# first, nginx holds a stream back until it ends (tests/e2e/test_behind_nginx.py).
STREAM_HEADERS = {"x-accel-buffering": "no", "cache-control": "no-cache"}


def _stream_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in STREAM_HEADERS if name in response.headers}


def test_sse_replies_tell_proxies_not_to_buffer_or_cache_them(
    stack: Stack, http: httpx.Client
) -> None:
    with published(stack, "/sax/test/stream-headers", TEST_LM, {"text": "a b"}) as model:
        calls = [
            http.build_request("POST", "/generate_stream", json={"model": model, "query": "q"}),
            http.build_request("POST", f"/v1{model}:streamGenerate", json={"query": "q"}),
            http.build_request("GET", "/watch", params={"model": model}),
            http.build_request("GET", f"/v1{model}:watch"),
            http.build_request(
                "POST", "/v1/completions", json={"model": model, "prompt": "q", "stream": True}
            ),
        ]
        for call in calls:
            sse = http.send(call, stream=True)
            sse.close()  # the headers are all this needs (a watch would go on)
            assert sse.status_code == 200, call.url
            assert sse.headers["content-type"] == "text/event-stream", call.url
            assert _stream_headers(sse) == STREAM_HEADERS, call.url
        unary = http.post("/generate", json={"model": model, "query": "q"})
    # Unary replies are left as they were: their route is the hot one, and holding back a
    # reply that comes whole delays nothing.
    assert unary.status_code == 200 and _stream_headers(unary) == {}
    assert _stream_headers(http.get("/listcells")) == {}


def test_replies_are_json_and_uncompressed_whatever_the_request_asks(
    stack: Stack, http: httpx.Client
) -> None:
    # What docs/api.md says of content negotiation: the body is JSON whatever Content-Type
    # says, Accept is disregarded (no 406), and API replies are never compressed (a
    # compressor would hold an SSE stream's events back), while the OpenAPI document is.
    asks = {"accept": "application/xml", "accept-encoding": "gzip, br"}
    with published(stack, "/sax/test/negotiation", TEST_LM, {"text": "a b"}) as model:
        body = f'{{"model": "{model}", "query": "q"}}'
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            headers = {**asks, "content-type": content_type}
            reply = http.post("/generate", content=body, headers=headers)
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"] == "application/json"
            assert "content-encoding" not in reply.headers
            assert reply.json() == {"texts": [{"text": "a b", "score": -0.2}]}
        stream = http.build_request("POST", "/generate_stream", content=body, headers=asks)
        sse = http.send(stream, stream=True)
        sse.close()
    assert sse.headers["content-type"] == "text/event-stream"
    assert "content-encoding" not in sse.headers
    document = http.get("/openapi.json", headers={"accept-encoding": "gzip"})
    assert document.headers["content-encoding"] == "gzip"


def test_grpc_clients_through_envoy_still_get_their_status(stack: Stack) -> None:
    model = "/sax/test/nope"
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == f"model {model} is not published: NotFound"
