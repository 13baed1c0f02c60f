"""Credentials over native gRPC (grpcio, grpcurl) and grpc-web, through the real Envoy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.common.stacktoken import REFUSED, STACK_TOKEN_HEADER
from gateway.edge import IDENTITY_HEADER
from gateway.launch.envoy import descriptor_set
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM
from tests.e2e.security.conftest import ISSUER, OPS_KEY, OPS_METADATA, TEAM_A_KEY, SecureStack
from tests.e2e.test_grpc_web import _frame, _unframe

pytestmark = pytest.mark.e2e

GRPCURL = Path(sys.executable).parent / "grpcurl"
MODEL = "/sax/test/sec-grpc"
TEAM_A = (("authorization", f"Bearer {TEAM_A_KEY}"),)


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, {"text": "grpc ok"}) as name:
        yield name


@pytest.fixture
def stub(secure: SecureStack) -> Iterator[gateway_pb2_grpc.SaxGatewayStub]:
    with sync_channel(secure.stack.grpc_address) as channel:
        yield gateway_pb2_grpc.SaxGatewayStub(channel)


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def test_grpc_without_credentials_is_unauthenticated(
    stub: gateway_pb2_grpc.SaxGatewayStub, model: str
) -> None:
    request = pb.GenerateRequest(model=model, query="q")
    assert _code(lambda: stub.Generate(request, timeout=20)) == grpc.StatusCode.UNAUTHENTICATED
    bad = (("authorization", "Bearer sk-wrong-000000000000"),)
    assert (
        _code(lambda: stub.Generate(request, metadata=bad, timeout=20))
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_grpc_with_a_token_for_another_audience_is_unauthenticated(
    secure: SecureStack, stub: gateway_pb2_grpc.SaxGatewayStub, model: str
) -> None:
    # An invalid token, as an expired one is: jwt_authn's 403 read as PERMISSION_DENIED.
    token = secure.signer.token({"iss": ISSUER, "aud": "other", "sub": "carol"})
    request = pb.GenerateRequest(model=model, query="q")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Generate(request, metadata=(("authorization", f"Bearer {token}"),), timeout=20)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "Audiences in Jwt are not allowed"


def test_grpc_with_credentials(stub: gateway_pb2_grpc.SaxGatewayStub, model: str) -> None:
    reply = stub.Generate(pb.GenerateRequest(model=model, query="q"), metadata=TEAM_A, timeout=20)
    assert [t.text for t in reply.texts] == ["grpc ok"]
    stream = stub.GenerateStream(
        pb.GenerateStreamRequest(model=model, query="q"), metadata=TEAM_A, timeout=20
    )
    assert list(stream)[-1].done
    publish = pb.PublishModelRequest(model="/sax/test/sec-g2", model_path=TEST_LM, checkpoint="x")
    assert (
        _code(lambda: stub.PublishModel(publish, metadata=TEAM_A, timeout=20))
        == grpc.StatusCode.PERMISSION_DENIED
    )


def test_a_gateway_port_takes_calls_from_envoy_only(
    secure: SecureStack, stub: gateway_pb2_grpc.SaxGatewayStub, model: str
) -> None:
    """A local process that calls a gateway port directly, naming the admin client in the
    identity header Envoy sends, is refused: the stack's token is not Envoy's to give away.
    Health still answers there (the supervisor's probes); through Envoy a key still works,
    whatever token the caller sent along (Envoy overwrites it)."""
    forged = ((IDENTITY_HEADER, "ops"), (STACK_TOKEN_HEADER, "guessed"))
    publish = pb.PublishModelRequest(model="/sax/test/stolen", model_path=TEST_LM, checkpoint="x")
    with sync_channel(secure.stack.gateway_addresses[0]) as channel:
        direct = gateway_pb2_grpc.SaxGatewayStub(channel)
        for metadata in (forged[:1], forged):
            with pytest.raises(grpc.RpcError) as published:
                direct.PublishModel(publish, metadata=metadata, timeout=20)
            assert (published.value.code(), published.value.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                REFUSED,
            )
        stream = direct.GenerateStream(
            pb.GenerateStreamRequest(model=model, query="q"), metadata=forged, timeout=20
        )
        assert _code(lambda: list(stream)) == grpc.StatusCode.UNAUTHENTICATED
        checked = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=20
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
    stolen = pb.GetModelRequest(model="/sax/test/stolen")
    assert (
        _code(lambda: stub.GetModel(stolen, metadata=OPS_METADATA, timeout=20))
        == grpc.StatusCode.NOT_FOUND
    )
    request = pb.GenerateRequest(model=model, query="q")
    reply = stub.Generate(request, metadata=(*TEAM_A, forged[1]), timeout=20)
    assert [t.text for t in reply.texts] == ["grpc ok"]


def _raw(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    """A unary call to ``path`` as written, serialized bytes in and out (a stub would only
    call the method's own path)."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        path, request_serializer=None, response_deserializer=None
    )
    return call


def test_a_jwt_in_the_query_string_is_no_credential(secure: SecureStack, model: str) -> None:
    # Envoy's jwt_authn would also take `?access_token=`, which the access log writes out
    # with the path; the documented place is the Authorization header only.
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "carol"})
    request = pb.GenerateRequest(model=model, query="q").SerializeToString()
    with sync_channel(secure.stack.grpc_address) as channel:
        path = f"/saxgateway.v1.SaxGateway/Generate?access_token={token}"
        call = _raw(channel, path)
        assert _code(lambda: call(request, timeout=20)) == grpc.StatusCode.UNAUTHENTICATED
        bearer = (("authorization", f"Bearer {token}"),)
        assert _raw(channel, "/saxgateway.v1.SaxGateway/Generate")(
            request, metadata=bearer, timeout=20
        )


def test_dot_segments_do_not_open_a_method(secure: SecureStack) -> None:
    # `/docs` is open: a path that starts there but names a method must be judged as that
    # method, not as the docs page (and must not reach the gateway without credentials).
    request = pb.ListCellsRequest().SerializeToString()
    with sync_channel(secure.stack.grpc_address) as channel:
        for path in (
            "/docs/../saxgateway.v1.SaxGateway/ListCells",
            "/docs/x/../../saxgateway.v1.SaxGateway/ListCells",
            "//saxgateway.v1.SaxGateway/ListCells",
            # Open were the docs files Envoy serves, not every path under /docs: these went
            # on to the gateway without a credential (an escaped slash is no segment).
            "/docs/x",
            "/docs/x%2F..%2F..%2Fsaxgateway.v1.SaxGateway%2FListCells",
            "/docs/docs.js/x",
        ):
            with pytest.raises(grpc.RpcError) as caught:
                _raw(channel, path)(request, timeout=20)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, path


def test_grpc_request_over_the_body_limit_is_resource_exhausted(
    stub: gateway_pb2_grpc.SaxGatewayStub, model: str
) -> None:
    # The secure stack's max_request_bytes is 64 KiB: Envoy refuses with 413, which a gRPC
    # client must see as RESOURCE_EXHAUSTED, as HTTP clients see {"code": 8}, not UNKNOWN,
    # with the plain message (tests/e2e/security/test_grpc_envoy_statuses.py).
    request = pb.GenerateRequest(model=model, query="x" * 70_000)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Generate(request, metadata=TEAM_A, timeout=20)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "Payload Too Large"


def test_grpc_open_calls(stub: gateway_pb2_grpc.SaxGatewayStub) -> None:
    assert stub.GetInfo(pb.GetInfoRequest(), timeout=20).message == "HTTP Server for SAX Client"


def test_health_watch_streams_without_credentials(secure: SecureStack) -> None:
    # Open to everyone; its first update must arrive at once, not when the stream ends.
    with sync_channel(secure.stack.grpc_address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=20
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


def test_health_check_and_list_answer_without_credentials(secure: SecureStack) -> None:
    # grpc.health.v1 is open to everyone; List was UNAUTHENTICATED without a credential.
    with sync_channel(secure.stack.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=20)
        listed = health.List(health_pb2.HealthListRequest(), timeout=20)
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert {s: r.status for s, r in listed.statuses.items()} == dict.fromkeys(
        ("", "saxgateway.v1.SaxGateway", "saxgateway.v1.OpenAIGateway"),
        health_pb2.HealthCheckResponse.SERVING,
    )


def _grpc_web(secure: SecureStack, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{secure.stack.http_url}/saxgateway.v1.SaxGateway/Generate",
        content=_frame(pb.GenerateRequest(model=MODEL, query="q")),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **headers},
        timeout=30,
    )


def _grpc_status(response: httpx.Response) -> tuple[str, list[bytes]]:
    messages, trailers = _unframe(response.content)
    return response.headers.get("grpc-status") or trailers.get("grpc-status", ""), messages


def test_grpc_web_with_and_without_credentials(secure: SecureStack, model: str) -> None:
    status, messages = _grpc_status(_grpc_web(secure, {}))
    assert (status, messages) == ("16", [])
    status, messages = _grpc_status(_grpc_web(secure, {"authorization": f"Bearer {TEAM_A_KEY}"}))
    assert status == "0"
    assert [t.text for t in pb.GenerateResponse.FromString(messages[0]).texts] == ["grpc ok"]


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )


def test_grpcurl_with_and_without_authorization(secure: SecureStack, model: str) -> None:
    address = secure.stack.grpc_address
    method = "saxgateway.v1.SaxGateway/Generate"
    request = json.dumps({"model": model, "query": "q"})
    anonymous = _grpcurl("-d", request, address, method)
    assert "Code: Unauthenticated" in anonymous.stderr or "Unauthenticated" in anonymous.stderr
    assert anonymous.returncode != 0
    # Reflection is admin-only in this config: the admin key finds the API by itself...
    admin = _grpcurl("-H", f"authorization: Bearer {OPS_KEY}", "-d", request, address, method)
    assert admin.returncode == 0, admin.stderr
    assert json.loads(admin.stdout)["texts"][0]["text"] == "grpc ok"
    # ...a data key does not, but calls with the published descriptor set.
    data = ("-H", f"authorization: Bearer {TEAM_A_KEY}")
    refused = _grpcurl(*data, address, "list")
    assert "PermissionDenied" in refused.stderr, refused.stderr
    result = _grpcurl(*data, "-protoset", str(descriptor_set()), "-d", request, address, method)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["texts"][0]["text"] == "grpc ok"
