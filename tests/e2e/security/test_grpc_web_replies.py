"""Envoy's own replies to grpc-web requests carry the grpc-status and grpc-message a native
gRPC client gets for the same request, in grpc-web's trailers-only form: HTTP 200, the status
in the headers, no body (gateway/launch/_grpc_web.py). Envoy's grpc_web filter used to keep
the HTTP status and derive grpc-status from it (415 -> 2, 400 -> 13, 429 -> 14), and a reply
made before it had seen the request (the body limit's 413, the Origin check's 403) reached the
client as plain JSON."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.message import Message
from saxgateway.v1 import gateway_pb2 as pb

from tests.e2e._access_log import access_log_line
from tests.e2e._grpc_replies import (
    WEB_PROTO,
    WEB_TEXT,
    grpc_web_call,
    native_headers,
    trailers_only_message,
)
from tests.e2e.security.conftest import BURSTY_KEY, TEAM_A_KEY, SecureStack

pytestmark = pytest.mark.e2e

GENERATE = "/saxgateway.v1.SaxGateway/Generate"
KEY = {"x-api-key": TEAM_A_KEY}
SMALL = pb.GenerateRequest(model="/sax/test/x", query="q")
#: Over the secure stack's 64 KiB body limit.
BIG = pb.GenerateRequest(model="/sax/test/x", query="a" * 70_000)
COMPRESSED = (
    "the request body is compressed (content-encoding), which this API does not take: send it "
    "uncompressed"
)
BAD_TIMEOUT = (
    "grpc-timeout: not a gRPC timeout, which is a positive number of up to 8 digits and a unit "
    "(H, M, S, m, u or n), such as 30S"
)
FOREIGN = {**KEY, "origin": "http://evil.example"}
FOREIGN_REFUSED = "cross-origin request refused: Origin is not allowed"


@pytest.mark.parametrize("content_type", ["application/grpc-web", WEB_PROTO, WEB_TEXT])
@pytest.mark.parametrize(
    ("message", "headers", "code", "text"),
    [
        pytest.param(SMALL, {**KEY, "content-encoding": "gzip"}, 12, COMPRESSED, id="415"),
        pytest.param(SMALL, {**KEY, "grpc-timeout": "soon"}, 3, BAD_TIMEOUT, id="400-timeout"),
        pytest.param(BIG, KEY, 8, "Payload Too Large", id="413"),
        pytest.param(SMALL, FOREIGN, 7, FOREIGN_REFUSED, id="403-origin"),
        pytest.param(SMALL, {}, 16, "Client authentication failed.", id="401"),
    ],
)
def test_envoys_reply_to_grpc_web_is_the_one_a_grpc_client_gets(
    secure: SecureStack,
    message: Message,
    headers: dict[str, str],
    code: int,
    text: str,
    content_type: str,
) -> None:
    request_id = str(uuid.uuid4())
    headers = {**headers, "x-request-id": request_id}
    url = secure.stack.http_url + GENERATE
    response = grpc_web_call(url, message, headers, content_type)
    assert trailers_only_message(response, code, content_type) == text
    # What a native gRPC client gets for the same request, to the byte.
    native = native_headers(url, message, headers)
    assert (native["grpc-status"], native["grpc-message"]) == (
        response.headers["grpc-status"],
        response.headers["grpc-message"],
    )
    line = access_log_line(secure.stack, request_id)
    assert (line["status"], line["grpc_status"]) == (200, code)


def test_a_rate_limited_grpc_web_call_is_resource_exhausted(secure: SecureStack) -> None:
    # `bursty` may make 3 calls at once and 1 a second: calls in a row soon get a 429, which
    # a grpc-web client got as grpc-status 14 (UNAVAILABLE), Envoy's reading of a 429.
    bursty = {"x-api-key": BURSTY_KEY}
    url = secure.stack.http_url + GENERATE
    for _ in range(10):
        response = grpc_web_call(url, SMALL, bursty)
        if response.headers.get("grpc-status") != "5":  # the model does not exist
            break
    assert trailers_only_message(response, 8) == "local_rate_limited"
    assert response.headers["retry-after"] == "1"
    line = access_log_line(secure.stack, response.headers["x-request-id"])
    assert (line["status"], line["grpc_status"]) == (200, 8)


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="%s"'),
        ({"x-api-key": "sk-not-a-key-0000000000"}, 'Bearer realm="%s", error="invalid_token"'),
    ],
)
def test_an_api_keys_refusal_to_grpc_web_and_grpc_carries_the_challenge(
    secure: SecureStack, headers: dict[str, str], challenge: str
) -> None:
    # As over HTTP (RFC 9110 11.6.1), and as a JWT's refusal did: an API key's had none.
    url = secure.stack.http_url + GENERATE
    response = grpc_web_call(url, SMALL, headers)
    assert trailers_only_message(response, 16) == "Client authentication failed."
    assert response.headers["www-authenticate"] == challenge % url
    assert native_headers(url, SMALL, headers)["www-authenticate"] == challenge % url
