"""The whole status gRPC and grpc-web clients get for a reply Envoy makes itself (no key, a
rate limit, RBAC, a body over the limit, a grpc-encoding or grpc-timeout Envoy refuses): what
they get for the gateway's own errors, a plain grpc-message and a google.rpc.Status in
grpc-status-details-bin with that same message and a RequestInfo naming the request's ID.

grpc-message was the HTTP face's JSON error (`{"code":16,"details":[...],"message":...}`),
which grpcio's ``details()`` and grpcurl printed as the message; and a grpc-web reply's
Status had an empty message, which Connect-ES, reading the status from the details, raised as
``Unauthenticated ""``. The HTTP face keeps its JSON (tests/e2e/security/test_access.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from urllib.parse import unquote

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from google.rpc import status_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from tests._grpc import sync_channel
from tests.e2e._grpc_replies import (
    WEB_PROTO,
    WEB_TEXT,
    envoy_status,
    grpc_web_call,
    native_headers,
    status_details,
)
from tests.e2e._node import ROOT
from tests.e2e._published import TEST_LM
from tests.e2e.security.conftest import BURSTY_KEY, ISSUER, TEAM_A_KEY, SecureStack

pytestmark = pytest.mark.e2e

GENERATE = "/saxgateway.v1.SaxGateway/Generate"
TEAM_A = (("authorization", f"Bearer {TEAM_A_KEY}"),)
SMALL = pb.GenerateRequest(model="/sax/test/x", query="q")
#: Over the secure stack's 64 KiB body limit.
BIG = pb.GenerateRequest(model="/sax/test/x", query="a" * 70_000)
PUBLISH = pb.PublishModelRequest(model="/sax/test/sec-st", model_path=TEST_LM, checkpoint="x")
UNSUPPORTED = (
    "grpc-encoding: not a message encoding this server reads; it reads identity, deflate and gzip"
)
BAD_TIMEOUT = (
    "grpc-timeout: not a gRPC timeout, which is a positive number of up to 8 digits and a unit "
    "(H, M, S, m, u or n), such as 30S"
)
COMPRESSED = (
    "the request body is compressed (content-encoding), which this API does not take: send it "
    "uncompressed"
)
FOREIGN_REFUSED = "cross-origin request refused: Origin is not allowed"


def _failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _grpcio_status(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """What grpcio reports of a failed call: its code, ``details()`` (grpc-message) and the
    Status its grpc-status-details-bin holds."""
    assert isinstance(error, grpc.Call)
    bins = [v for k, v in error.trailing_metadata() or () if k == "grpc-status-details-bin"]
    assert len(bins) == 1, error.trailing_metadata()
    assert isinstance(bins[0], bytes)
    return error.code(), error.details() or "", status_pb2.Status.FromString(bins[0])


def _stub_failure(
    secure: SecureStack, call: Callable[[gateway_pb2_grpc.SaxGatewayStub, str], object]
) -> tuple[str, tuple[grpc.StatusCode, str, status_pb2.Status]]:
    """The request ID ``call`` sent and what grpcio reports of its failure."""
    request_id = str(uuid.uuid4())
    with sync_channel(secure.stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        return request_id, _grpcio_status(_failure(lambda: call(stub, request_id)))


def _rid(request_id: str, *more: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id), *more)


def test_grpcio_without_a_key_gets_a_plain_unauthenticated(secure: SecureStack) -> None:
    request_id, got = _stub_failure(
        secure, lambda stub, rid: stub.Generate(SMALL, metadata=_rid(rid), timeout=20)
    )
    text = "Client authentication failed."
    assert got == (grpc.StatusCode.UNAUTHENTICATED, text, envoy_status(16, text, request_id))


def test_grpcio_with_a_token_for_another_audience_gets_jwt_authns_reason(
    secure: SecureStack,
) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "other", "sub": "carol"})
    bearer = ("authorization", f"Bearer {token}")
    request_id, got = _stub_failure(
        secure, lambda stub, rid: stub.Generate(SMALL, metadata=_rid(rid, bearer), timeout=20)
    )
    text = "Audiences in Jwt are not allowed"
    assert got == (grpc.StatusCode.UNAUTHENTICATED, text, envoy_status(16, text, request_id))


def test_grpcio_with_a_token_naming_no_client_is_told_which_claim(secure: SecureStack) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw"})
    bearer = ("authorization", f"Bearer {token}")
    request_id, got = _stub_failure(
        secure, lambda stub, rid: stub.Generate(SMALL, metadata=_rid(rid, bearer), timeout=20)
    )
    text = "Jwt has no sub claim, which names the client"
    assert got == (grpc.StatusCode.UNAUTHENTICATED, text, envoy_status(16, text, request_id))


def test_grpcio_denied_by_rbac_gets_a_plain_permission_denied(secure: SecureStack) -> None:
    request_id, got = _stub_failure(
        secure,
        lambda stub, rid: stub.PublishModel(PUBLISH, metadata=_rid(rid, *TEAM_A), timeout=20),
    )
    text = "RBAC: access denied"
    assert got == (grpc.StatusCode.PERMISSION_DENIED, text, envoy_status(7, text, request_id))


def test_grpcio_over_the_body_limit_gets_a_plain_resource_exhausted(secure: SecureStack) -> None:
    request_id, got = _stub_failure(
        secure, lambda stub, rid: stub.Generate(BIG, metadata=_rid(rid, *TEAM_A), timeout=20)
    )
    text = "Payload Too Large"
    assert got == (grpc.StatusCode.RESOURCE_EXHAUSTED, text, envoy_status(8, text, request_id))


def test_a_grpc_retry_policy_does_not_send_a_body_over_the_limit_again(
    secure: SecureStack,
) -> None:
    # RESOURCE_EXHAUSTED, which the retry policy docs/clients.md gives retries: without a
    # negative pushback, grpc sent the oversized request three times.
    policy = {
        "maxAttempts": 3,
        "initialBackoff": "0.5s",
        "maxBackoff": "5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    name = [{"service": "saxgateway.v1.SaxGateway", "method": "Generate"}]
    config = json.dumps({"methodConfig": [{"name": name, "retryPolicy": policy}]})
    with grpc.insecure_channel(
        secure.stack.grpc_address, options=[("grpc.service_config", config)]
    ) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Generate(BIG, metadata=TEAM_A, timeout=20)
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers: dict[str, object] = {m.key: m.value for m in error.trailing_metadata() or ()}
    assert trailers["grpc-retry-pushback-ms"] == "-1"


def test_grpcio_rate_limited_gets_a_plain_resource_exhausted(secure: SecureStack) -> None:
    # `bursty` may make 3 calls at once and 1 a second: calls in a row soon get a 429.
    bursty = ("x-api-key", BURSTY_KEY)
    with sync_channel(secure.stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for _ in range(10):
            request_id = str(uuid.uuid4())
            with pytest.raises(grpc.RpcError) as caught:
                stub.Generate(SMALL, metadata=_rid(request_id, bursty), timeout=20)
            error = caught.value
            if error.code() != grpc.StatusCode.NOT_FOUND:  # the model does not exist
                break
    text = "local_rate_limited"
    expected = (grpc.StatusCode.RESOURCE_EXHAUSTED, text, envoy_status(8, text, request_id))
    assert _grpcio_status(error) == expected
    # gRPC's own Retry-After, which a service config's retry policy waits for (it reads no
    # retry-after): its bucket holds a token again in a second.
    # grpc's stubs type a value as bytes; an ASCII header's is a str.
    trailers: dict[str, object] = {m.key: m.value for m in error.trailing_metadata() or ()}
    assert (trailers["retry-after"], trailers["grpc-retry-pushback-ms"]) == ("1", "1000")


@pytest.mark.parametrize(
    ("headers", "code", "text"),
    [
        pytest.param({"grpc-encoding": "snappy"}, 12, UNSUPPORTED, id="415-grpc-encoding"),
        pytest.param({"grpc-timeout": "soon"}, 3, BAD_TIMEOUT, id="400-timeout"),
    ],
)
def test_a_grpc_call_envoy_refuses_gets_a_plain_message(
    secure: SecureStack, headers: dict[str, str], code: int, text: str
) -> None:
    # Headers grpcio would not send as given: curl writes them (h2c).
    request_id = str(uuid.uuid4())
    sent = {**headers, "x-api-key": TEAM_A_KEY, "x-request-id": request_id}
    got = native_headers(secure.stack.http_url + GENERATE, SMALL, sent)
    assert (got["grpc-status"], unquote(got["grpc-message"])) == (str(code), text), got
    assert status_details(got["grpc-status-details-bin"]) == envoy_status(code, text, request_id)


def _web_status(response: httpx.Response, content_type: str) -> tuple[str, str, object]:
    """A grpc-web reply Envoy made itself, as grpc-web's trailers-only form (HTTP 200, the
    status in the headers, no body): grpc-status, grpc-message (percent-decoded) and the
    Status of grpc-status-details-bin."""
    assert response.status_code == 200, (response.status_code, response.headers)
    text = content_type == WEB_TEXT
    assert response.headers["content-type"] == (WEB_TEXT + "+proto" if text else WEB_PROTO)
    assert response.content == b""
    return (
        response.headers["grpc-status"],
        unquote(response.headers["grpc-message"]),
        status_details(response.headers["grpc-status-details-bin"]),
    )


@pytest.mark.parametrize("content_type", [WEB_PROTO, WEB_TEXT])
@pytest.mark.parametrize(
    ("message", "headers", "code", "text"),
    [
        pytest.param(SMALL, {}, 16, "Client authentication failed.", id="401"),
        pytest.param(BIG, {"x-api-key": TEAM_A_KEY}, 8, "Payload Too Large", id="413"),
        pytest.param(
            SMALL, {"x-api-key": TEAM_A_KEY, "grpc-timeout": "soon"}, 3, BAD_TIMEOUT, id="400"
        ),
        pytest.param(
            SMALL, {"x-api-key": TEAM_A_KEY, "grpc-encoding": "snappy"}, 12, UNSUPPORTED, id="415"
        ),
        pytest.param(
            SMALL,
            {"x-api-key": TEAM_A_KEY, "content-encoding": "gzip"},
            12,
            COMPRESSED,
            id="415-compressed",
        ),
        pytest.param(
            SMALL,
            {"x-api-key": TEAM_A_KEY, "origin": "http://evil.example"},
            7,
            FOREIGN_REFUSED,
            id="403-origin",
        ),
    ],
)
def test_grpc_web_gets_the_message_in_grpc_message_and_in_the_details(
    secure: SecureStack,
    message: Message,
    headers: dict[str, str],
    code: int,
    text: str,
    content_type: str,
) -> None:
    request_id = str(uuid.uuid4())
    url = secure.stack.http_url + GENERATE
    response = grpc_web_call(url, message, {**headers, "x-request-id": request_id}, content_type)
    expected = (str(code), text, envoy_status(code, text, request_id))
    assert _web_status(response, content_type) == expected


def test_a_rate_limited_grpc_web_call_gets_the_message_in_the_details(
    secure: SecureStack,
) -> None:
    url = secure.stack.http_url + GENERATE
    for _ in range(10):
        request_id = str(uuid.uuid4())
        headers = {"x-api-key": BURSTY_KEY, "x-request-id": request_id}
        response = grpc_web_call(url, SMALL, headers)
        if response.headers.get("grpc-status") != "5":  # the model does not exist
            break
    text = "local_rate_limited"
    assert _web_status(response, WEB_PROTO) == ("8", text, envoy_status(8, text, request_id))


def test_rbac_refusing_a_grpc_web_call_gets_the_message_in_the_details(
    secure: SecureStack,
) -> None:
    request_id = str(uuid.uuid4())
    url = secure.stack.http_url + "/saxgateway.v1.SaxGateway/PublishModel"
    headers = {"x-api-key": TEAM_A_KEY, "x-request-id": request_id}
    response = grpc_web_call(url, PUBLISH, headers)
    text = "RBAC: access denied"
    assert _web_status(response, WEB_PROTO) == ("7", text, envoy_status(7, text, request_id))


def test_connect_es_raises_envoys_message(secure: SecureStack) -> None:
    # Connect-ES takes the status from grpc-status-details-bin: it raised `Unauthenticated ""`.
    node = shutil.which("node")
    assert node, "node is needed"
    request_id = str(uuid.uuid4())
    script = ROOT / "tests" / "e2e" / "node" / "connect_refused.mjs"
    result = subprocess.run(
        [node, script, secure.stack.http_url, request_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "code": "Unauthenticated",
        "message": "Client authentication failed.",
        "requestId": request_id,
    }
