"""x-sax-query-cost-ms through Envoy. The gateway sends a unary call's cost as a gRPC trailer
(cheaper than a header of its own); Envoy's `cost_header` filter copies it into the reply's
headers, where HTTP/JSON clients, which never see a unary call's trailers, and gRPC clients
find it. Streams keep it as a trailer (tests/e2e/test_streaming.py checks that Envoy holds
no event back)."""

from __future__ import annotations

import httpx
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, published

COST = "x-sax-query-cost-ms"


def test_an_http_json_reply_carries_the_cost_in_a_header(stack: Stack, http: httpx.Client) -> None:
    with published(stack, "/sax/test/cost-http", TEST_LM, {"text": "a b"}) as model:
        reply = http.post("/generate", json={"model": model, "query": "q"})
        missing = http.post("/generate", json={"model": "/sax/test/nope", "query": "q"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"texts": [{"text": "a b", "score": -0.2}]}
    assert int(reply.headers[COST]) >= 1
    assert missing.status_code == 404
    assert COST not in missing.headers  # no model server answered: nothing was reported


def test_a_grpc_client_through_envoy_finds_it_in_the_initial_metadata(stack: Stack) -> None:
    with (
        published(stack, "/sax/test/cost-grpc", TEST_LM, {"text": "a b"}) as model,
        sync_channel(stack.grpc_address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        reply, call = stub.Generate.with_call(
            pb.GenerateRequest(model=model, query="q"), timeout=30
        )
    assert [t.text for t in reply.texts] == ["a b"]
    header = dict(call.initial_metadata())[COST]
    assert int(header) >= 1
    assert dict(call.trailing_metadata())[COST] == header  # the same figure, both places


def test_the_cost_header_is_documented_on_unary_replies_only(http: httpx.Client) -> None:
    # Clients read it (docs/operations.md), but the OpenAPI document did not name it.
    doc = http.get("/openapi.json").json()
    header = doc["components"]["headers"][COST]
    assert (header["required"], header["schema"]) == (False, {"type": "integer", "minimum": 0})
    ref = {"$ref": f"#/components/headers/{COST}"}
    for path, ops in doc["paths"].items():
        for verb, op in ops.items():
            if "SaxGateway" not in op["tags"]:
                continue
            ok = op["responses"]["200"]
            assert (ok["headers"].get(COST) == ref) == ("application/json" in ok["content"]), (
                path,
                verb,
            )
