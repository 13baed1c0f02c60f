"""Failures grpc reports itself, before (or around) the gateway's code: a header it cannot
parse (a ``-bin`` value that is not base64), a ``grpc-timeout`` that passes before the handler
runs (``Deadline Exceeded``; on the routes of HTTP streams and of the OpenAI API the gateway
alone keeps an HTTP client's deadline, see envoy/envoy.yaml.tmpl). No gateway code shapes
their reply, yet each keeps its route's error shape (gateway/launch/_grpc_failures.py):
OpenAI's envelope on the OpenAI routes, which the SDKs parse (they got the transcoder's
``{"code","message","details"}``), and on the native routes the request ID every error body
names (they had ``"details": []``).

A binary header that is not base64 is the client's mistake, not the server's: it was grpc's
INTERNAL (500, which the SDKs retry), and is INVALID_ARGUMENT (400) naming the header, for
HTTP, gRPC and grpc-web clients alike. One a gRPC library encodes, as it does every binary
header it sends, passes as before.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._access_log import access_log_line
from tests.e2e._bodies import gateway_error, openai_error
from tests.e2e._grpc_replies import grpc_web_call, native_headers
from tests.e2e._published import TEST_LM, published

NOT_BASE64 = {"x-probe-bin": "###"}
REFUSED = (
    "x-probe-bin: not base64, which a header whose name ends in -bin must be (gRPC binary"
    " metadata): encode its value, or name it without -bin"
)
MODEL = "/sax/test/grpc-made"
GENERATE = "/saxgateway.v1.SaxGateway/Generate"
GENERATE_STREAM = "/saxgateway.v1.SaxGateway/GenerateStream"


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, TEST_LM, {"text": "ok"}) as name:
        yield name


def _openai_calls(model: str) -> list[tuple[str, str, dict[str, object] | None]]:
    """(method, path, body) of every OpenAI route, streams included."""
    chat: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "q"}]}
    return [
        ("GET", "/v1/models", None),
        ("GET", f"/v1/models{model}", None),
        ("POST", "/v1/completions", {"model": model, "prompt": "q"}),
        ("POST", "/v1/completions", {"model": model, "prompt": "q", "stream": True}),
        ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}),
        ("POST", "/v1/responses", {"model": model, "input": "q"}),
        ("POST", "/v1/responses", {"model": model, "input": "q", "stream": True}),
        ("POST", "/v1/embeddings", {"model": model, "input": "q"}),
    ]


def test_on_openai_routes_a_binary_header_not_in_base64_is_an_invalid_request_error(
    http: httpx.Client, model: str
) -> None:
    for method, path, body in _openai_calls(model):
        response = http.request(method, path, json=body, headers=NOT_BASE64)
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {"error": openai_error(REFUSED)}, (path, body)
        assert response.headers["content-type"] == "application/json"


def test_an_expired_deadline_on_an_openai_route_is_the_gateways_timeout_error(
    http: httpx.Client, model: str
) -> None:
    # 1 ns. grpc reported it itself about one call in five (`Deadline Exceeded`, which Envoy's
    # Lua turned into the envelope), and a stream it cut lost its last event; Envoy now hands
    # the OpenAI routes' grpc-timeout to the gateway under another name (envoy/envoy.yaml.tmpl),
    # so the gateway reports every one. Envoy and the gateway keep time apart, so a call may
    # still finish first (a 200; or a stream may have sent its first event: an in-band error).
    expired = {"grpc-timeout": "1n"}
    for stream in (False, True):
        for _ in range(50):
            body = {"model": model, "prompt": "q", "stream": stream}
            response = http.post("/v1/completions", json=body, headers=expired)
            if response.status_code == 200:
                continue
            assert response.status_code == 504, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"], error["param"]) == (
                "timeout_error",
                "timeout",
                None,
            )
            assert error["message"].startswith(f"call to {model} exceeded its deadline"), error


def _native_body(path: str, model: str) -> dict[str, str]:
    return {"query": "q"} if path.startswith("/v1/") else {"model": model, "query": "q"}


@pytest.mark.parametrize(
    "path",
    ["/generate", f"/v1{MODEL}:generate", "/generate_stream", f"/v1{MODEL}:streamGenerate"],
)
def test_on_native_routes_a_binary_header_not_in_base64_is_a_400_naming_it(
    http: httpx.Client, stack: Stack, model: str, path: str
) -> None:
    body = _native_body(path, model)
    response = http.post(path, json=body, headers=NOT_BASE64)
    assert response.status_code == 400, response.text
    assert response.json() == gateway_error(response, 3, REFUSED)
    # A client's own ID too, and the access log has the code the client got.
    mine = {**NOT_BASE64, "x-request-id": f'mine "{path}"'}
    response = http.post(path, json=body, headers=mine)
    assert response.json() == gateway_error(response, 3, REFUSED)
    assert response.json()["details"][0]["request_id"] == f'mine "{path}"'
    line = access_log_line(stack, f'mine \\"{path}\\"')
    assert (line["status"], line["grpc_status"]) == (400, 3), line
    # A binary header in base64 is gRPC metadata as any other: the call is served.
    encoded = http.post(path, json=body, headers={"x-probe-bin": "AAEC/w=="})
    assert encoded.status_code == 200, encoded.text


@pytest.mark.parametrize("path", ["/generate", f"/v1{MODEL}:generate"])
def test_a_deadline_grpc_reports_on_a_native_route_names_the_request_id(
    http: httpx.Client, model: str, path: str
) -> None:
    # As on the OpenAI routes before: grpc reports the expired deadline about one call in five.
    for _ in range(200):
        response = http.post(path, json=_native_body(path, model), headers={"grpc-timeout": "1n"})
        if response.status_code == 200:
            continue
        assert response.status_code == 504, response.text
        if response.json()["message"] == "Deadline Exceeded":  # grpc's own
            assert response.json() == gateway_error(response, 4, "Deadline Exceeded")
            return
        assert response.json()["details"] == gateway_error(response, 4, "")["details"]
    pytest.fail("grpc never reported the deadline itself in 200 calls")


@pytest.mark.parametrize("path", ["/generate_stream", f"/v1{MODEL}:streamGenerate"])
def test_an_expired_deadline_on_a_native_stream_is_the_gateways_naming_the_request_id(
    http: httpx.Client, model: str, path: str
) -> None:
    # Once grpc's (one call in five, `Deadline Exceeded`); the gateway's own every time now
    # that Envoy hands an HTTP stream's grpc-timeout to the gateway under another name.
    for _ in range(50):
        response = http.post(path, json=_native_body(path, model), headers={"grpc-timeout": "1n"})
        if response.status_code == 200:  # the first event went out: an in-band error
            continue
        assert response.status_code == 504, response.text
        message = response.json()["message"]
        assert message.startswith(f"call to {model} exceeded its deadline"), message
        assert response.json() == gateway_error(response, 4, message)


def _status(encoded: str) -> status_pb2.Status:
    return status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))


@pytest.mark.parametrize("method", [GENERATE, GENERATE_STREAM])
def test_over_grpc_a_binary_header_not_in_base64_is_invalid_argument(
    stack: Stack, model: str, method: str
) -> None:
    # What a client that writes its own headers sends (grpc-web's metadata goes as given).
    stream = method == GENERATE_STREAM
    request = (pb.GenerateStreamRequest if stream else pb.GenerateRequest)(model=model, query="q")
    headers = native_headers(stack.http_url + method, request, NOT_BASE64)
    assert (headers["grpc-status"], headers["grpc-message"]) == ("3", REFUSED), headers
    info = error_details_pb2.RequestInfo(request_id=headers["x-request-id"])
    expected = status_pb2.Status(code=3, message=REFUSED)
    expected.details.add().Pack(info)
    assert _status(headers["grpc-status-details-bin"]) == expected
    web = grpc_web_call(stack.http_url + method, request, NOT_BASE64)
    assert web.status_code == 200, web.headers
    assert (web.headers["grpc-status"], web.headers["grpc-message"]) == ("3", REFUSED)
    assert web.content == b""
    # A gRPC library base64-encodes every binary header's value, whatever its bytes (these
    # are no base64 text), and the call is served.
    metadata = (("x-probe-bin", b"\x00\xff###"),)
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        if stream:
            assert isinstance(request, pb.GenerateStreamRequest)
            messages = list(stub.GenerateStream(request, timeout=30, metadata=metadata))
            texts = [t.text for t in messages[-1].texts]
        else:
            assert isinstance(request, pb.GenerateRequest)
            texts = [t.text for t in stub.Generate(request, timeout=30, metadata=metadata).texts]
    assert texts == ["ok"]
