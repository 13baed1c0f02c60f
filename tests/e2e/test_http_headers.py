"""What an HTTP/JSON reply's headers say: nothing of the gRPC hop behind it (grpc-status,
grpc-message, grpc-accept-encoding: the status is the HTTP status and the JSON body's code),
and no `server: envoy` or other header that names Envoy. gRPC clients through the same port
still get their status."""

from __future__ import annotations

import subprocess

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


def test_grpc_clients_through_envoy_still_get_their_status(stack: Stack) -> None:
    model = "/sax/test/nope"
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == f"model {model} is not published: NotFound"


def test_an_http2_stream_ends_without_grpc_trailers(stack: Stack) -> None:
    # Over HTTP/2 an SSE reply ends with trailers, which carried grpc-status and grpc-message
    # again; the query cost stays (the cost header of a stream, docs/api.md).
    with published(stack, "/sax/test/h2trailers", TEST_LM, {"text": "a b"}) as model:
        body = f'{{"model": "{model}", "query": "q"}}'
        curl = ["curl", "-s", "-i", "--http2-prior-knowledge", "--data", body]
        url = f"{stack.http_url}/generate_stream"
        reply = subprocess.run([*curl, url], capture_output=True, timeout=60, check=True)
    status, _, rest = reply.stdout.decode().partition("\r\n\r\n")  # the headers, then SSE
    *events, trailers = rest.split("\n\n")
    assert status.startswith("HTTP/2 200"), reply.stdout
    assert [e.startswith("data: ") for e in events] == [True, True, True], events
    names = {line.partition(":")[0].lower() for line in trailers.splitlines() if line}
    assert names == {"x-sax-query-cost-ms"}, trailers
