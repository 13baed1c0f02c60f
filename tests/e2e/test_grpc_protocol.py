"""What a gRPC client gets through Envoy's public port at the protocol level: compressed
messages (gRPC's compression spec, github.com/grpc/grpc doc/compression.md), a call without
`te: trailers`, codecs other than protobuf, and grpc.health.v1 for a service the gateway does
not report on."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from urllib.parse import unquote

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch._connect import NOT_CONNECT
from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._bodies import envoy_error, openai_error
from tests.e2e._grpc_replies import (
    WEB_PROTO,
    WEB_TEXT,
    envoy_status,
    grpc_web_call,
    native_headers,
    status_details,
    trailers_only_message,
)
from tests.e2e._node import ROOT
from tests.e2e._published import TEST_LM, published

UNSUPPORTED = (
    "grpc-encoding: not a message encoding this server reads; it reads identity, deflate and gzip"
)
ACCEPTED = "identity, deflate, gzip"
GENERATE = "/saxgateway.v1.SaxGateway/Generate"


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, "/sax/test/wire", TEST_LM, {"text": "a b"}) as name:
        yield name


@pytest.mark.parametrize(
    "compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip, grpc.Compression.Deflate]
)
def test_compressed_grpc_calls_are_served(
    stack: Stack, model: str, compression: grpc.Compression
) -> None:
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        reply = stub.Generate(
            pb.GenerateRequest(model=model, query="q"), timeout=30, compression=compression
        )
        request = pb.GenerateStreamRequest(model=model, query="q")
        stream = list(stub.GenerateStream(request, timeout=30, compression=compression))
    assert [t.text for t in reply.texts] == ["a b"]
    assert [d.text for m in stream for d in m.deltas] == ["a", " b"]
    assert stream[-1].done


def test_a_grpc_call_without_te_trailers_is_served(stack: Stack, model: str) -> None:
    # grpc in the gateway resets a stream that lacks `te: trailers`; through Envoy that was
    # UNAVAILABLE "upstream connect error or disconnect/reset before headers", which tells a
    # client to retry the same call. Envoy now adds the header to every call it forwards.
    request = pb.GenerateRequest(model=model, query="q")
    headers = native_headers(stack.http_url + GENERATE, request, {"te": None})
    assert (headers["grpc-status"], headers["grpc-message"]) == ("0", "")


@pytest.mark.parametrize("encoding", ["snappy", "zstd", "GZIP"])
def test_an_unknown_grpc_encoding_is_unimplemented_naming_those_taken(
    stack: Stack, model: str, encoding: str
) -> None:
    # grpc in the gateway answered INTERNAL "Error parsing 'grpc-encoding' metadata", with no
    # grpc-accept-encoding, even for a message that was not compressed (as here).
    request = pb.GenerateRequest(model=model, query="q")
    headers = native_headers(stack.http_url + GENERATE, request, {"grpc-encoding": encoding})
    assert (headers["grpc-status"], headers["grpc-accept-encoding"]) == ("12", ACCEPTED)
    assert unquote(headers["grpc-message"]) == UNSUPPORTED
    details = status_details(headers["grpc-status-details-bin"])
    assert details == envoy_status(12, UNSUPPORTED, headers["x-request-id"])


@pytest.mark.parametrize("content_type", [WEB_PROTO, WEB_TEXT])
def test_an_unknown_grpc_encoding_is_unimplemented_to_grpc_web(
    stack: Stack, model: str, content_type: str
) -> None:
    request = pb.GenerateRequest(model=model, query="q")
    url = stack.http_url + GENERATE
    response = grpc_web_call(url, request, {"grpc-encoding": "snappy"}, content_type)
    assert trailers_only_message(response, 12, content_type) == UNSUPPORTED


def test_an_unknown_grpc_encoding_on_http_json_is_a_json_415(
    http: httpx.Client, model: str
) -> None:
    # A 500 INTERNAL with no request ID, and not OpenAI's envelope on its paths.
    headers = {"grpc-encoding": "snappy"}
    response = http.post("/generate", json={"model": model, "query": "q"}, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json() == envoy_error(response, 12, UNSUPPORTED)
    assert "grpc-accept-encoding" not in response.headers  # gRPC's, as on every HTTP reply
    openai = http.post("/v1/completions", json={"model": model, "prompt": "q"}, headers=headers)
    assert openai.status_code == 415, openai.text
    assert openai.json() == {"error": openai_error(UNSUPPORTED)}
    # The encodings grpc reads pass, though a JSON body is never compressed.
    for encoding in ("gzip", "deflate", "identity"):
        ok = http.post(
            "/generate", json={"model": model, "query": "q"}, headers={"grpc-encoding": encoding}
        )
        assert (ok.status_code, ok.json()) == (200, {"texts": [{"text": "a b", "score": -0.2}]})


NOT_PROTOBUF = (
    "content-type: not a codec this server reads; its gRPC and grpc-web messages are protobuf"
    " (application/grpc, application/grpc-web or application/grpc-web-text, each optionally"
    " +proto)"
)


@pytest.mark.parametrize("codec", ["json", "thrift"])
@pytest.mark.parametrize("content_type", [WEB_PROTO, WEB_TEXT])
def test_a_grpc_web_codec_other_than_protobuf_is_a_json_415(
    stack: Stack, model: str, content_type: str, codec: str
) -> None:
    # grpc_web passes a codec it lacks on as plain HTTP: the transcoder answered 404 "Could
    # not resolve ... to a method", and had a reply been mapped as gRPC's, it was a 200.
    web_type = content_type.removesuffix("+proto") + "+" + codec
    request = pb.GenerateRequest(model=model, query="q")
    response = grpc_web_call(stack.http_url + GENERATE, request, {}, web_type)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == envoy_error(response, 12, NOT_PROTOBUF)


def test_a_grpc_codec_other_than_protobuf_is_unimplemented(stack: Stack, model: str) -> None:
    # grpc ignores the codec in the content-type and read the message as protobuf.
    request = pb.GenerateRequest(model=model, query="q")
    headers = native_headers(
        stack.http_url + GENERATE, request, {"content-type": "application/grpc+json"}
    )
    assert headers["grpc-status"] == "12"
    assert unquote(headers["grpc-message"]) == NOT_PROTOBUF
    details = status_details(headers["grpc-status-details-bin"])
    assert details == envoy_status(12, NOT_PROTOBUF, headers["x-request-id"])
    proto = native_headers(
        stack.http_url + GENERATE, request, {"content-type": "application/grpc+proto"}
    )
    assert (proto["grpc-status"], proto["grpc-message"]) == ("0", "")


def test_health_of_an_unknown_service_is_not_found_saying_which_there_are(stack: Stack) -> None:
    # grpc's health servicer answered NOT_FOUND with an empty message.
    with sync_channel(stack.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="x" * 10_000), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == (
        'no such service: health is reported for "" (the server), saxgateway.v1.SaxGateway'
        " and saxgateway.v1.OpenAIGateway"
    )


SERVED = ("", "saxgateway.v1.SaxGateway", "saxgateway.v1.OpenAIGateway")


def test_health_reports_every_service_reflection_lists(stack: Stack) -> None:
    # OpenAIGateway was NOT_FOUND to Check and SERVICE_UNKNOWN to Watch (a Kubernetes probe
    # with grpc.service set to it never passed), and List, which reflection advertises, was
    # INTERNAL "internal error in sax-gateway" with a traceback in the log at every call.
    serving = health_pb2.HealthCheckResponse.SERVING
    with sync_channel(stack.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in SERVED:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert reply.status == serving, service
        watch = health.Watch(
            health_pb2.HealthCheckRequest(service="saxgateway.v1.OpenAIGateway"), timeout=30
        )
        assert next(watch).status == serving
        watch.cancel()
        listed = health.List(health_pb2.HealthListRequest(), timeout=30)
    assert {s: r.status for s, r in listed.statuses.items()} == dict.fromkeys(SERVED, serving)


BUF = ROOT / "node_modules" / ".bin" / "buf"  # @bufbuild/buf, from package.json


def _buf_curl(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail("buf (`npm ci`, run by `make contract`) is needed")
    return subprocess.run([BUF, "curl", *args], capture_output=True, text=True, timeout=20)


def test_a_connect_call_is_refused_saying_which_protocols_are_served(stack: Stack) -> None:
    # Connect is `buf curl`'s default protocol and Connect-ES's createConnectTransport: its
    # calls name a method's gRPC path, and the transcoder answered 404 "Could not resolve
    # /saxgateway.v1.SaxGateway/GetInfo to a method", for a method that exists, which buf
    # curl printed as `unimplemented: 404 Not Found`.
    url = stack.http_url + "/saxgateway.v1.SaxGateway/GetInfo"
    refusal = {"code": "unimplemented", "message": NOT_CONNECT}
    for kind in ("application/proto", "application/json"):
        headers = {"content-type": kind, "connect-protocol-version": "1"}
        refused = httpx.post(url, content=b"{}", headers=headers)
        assert refused.status_code == 415, refused.text
        assert refused.json() == refusal
    # A stream's error is its last message (an end-stream frame: flag 2, length, JSON), in a
    # 200: a Connect client reads no other (`unknown: HTTP status 415`).
    stream = httpx.post(url, content=b"", headers={"content-type": "application/connect+proto"})
    assert (stream.status_code, stream.headers["content-type"]) == (
        200,
        "application/connect+proto",
    )
    assert stream.content[0] == 2
    assert json.loads(stream.content[5:]) == {"error": refusal}
    assert int.from_bytes(stream.content[1:5], "big") == len(stream.content) - 5
    schema = ("--schema", str(ROOT / "release" / "saxgateway-v1.binpb"))
    unary = _buf_curl(*schema, "--http2-prior-knowledge", url)
    assert unary.returncode == 8 * 12, unary.stderr  # buf curl exits 8 times the code
    assert json.loads(unary.stderr) == refusal
    streamed = stack.http_url + "/saxgateway.v1.SaxGateway/GenerateStream"
    request = json.dumps({"model": "/sax/test/x", "query": "q"})
    refused_stream = _buf_curl(*schema, "-d", request, streamed)
    assert refused_stream.returncode == 8 * 12, refused_stream.stderr
    assert json.loads(refused_stream.stderr) == refusal
    # Reflection over Connect, a stream whose body never ends, is answered at its headers:
    # held by the body limit's buffer, it waited for good.
    reflected = _buf_curl("--reflect", url)
    assert reflected.returncode == 1, reflected.stderr
    # ...and the protocols it names work.
    for protocol in ("grpc", "grpcweb"):
        served = _buf_curl("--protocol", protocol, "--http2-prior-knowledge", url)
        assert served.returncode == 0, served.stderr
        assert json.loads(served.stdout)["message"] == "HTTP Server for SAX Client"


NOT_HTTP = (
    "a gRPC method path (/package.Service/Method) is served over gRPC and grpc-web only"
    " (content-type application/grpc or application/grpc-web, with no parameters); over"
    " HTTP/JSON each method has"
    " a route of its own (GET /openapi.json lists them)"
)


def test_a_grpc_method_path_called_as_plain_http_says_how_to_call_it(stack: Stack) -> None:
    # Postman's or curl's JSON POST to a method's gRPC path: the transcoder answered 404
    # "Could not resolve /saxgateway.v1.SaxGateway/ListCells to a method", for a method that
    # exists (a caller looked for a typo in the path).
    url = stack.http_url + "/saxgateway.v1.SaxGateway/ListCells"
    for response in (
        httpx.post(url, json={}),
        httpx.get(url),  # no content-type at all
        httpx.post(
            url + "?sax_cell=/sax/test", content=b"{}", headers={"content-type": "text/plain"}
        ),
        # A grpc-web type with a parameter, which Envoy's grpc-web filter does not take: the
        # transcoder's 404 too. So was gRPC's own with one, which Envoy does not count as gRPC
        # either (with the refusal as a 200 with no grpc-status, once routed here).
        *(
            httpx.post(url, content=b"AAAAAAA=", headers={"content-type": kind})
            for kind in (
                "application/grpc-web-text; charset=utf-8",
                "application/grpc-web+proto;charset=UTF-8",
                "application/grpc; charset=utf-8",
                "application/grpc;",
            )
        ),
    ):
        assert response.status_code == 415, response.text
        assert response.json() == envoy_error(response, 12, NOT_HTTP)
    openai = httpx.post(stack.http_url + "/saxgateway.v1.OpenAIGateway/ListOpenAIModels", json={})
    assert (openai.status_code, openai.json()) == (415, {"error": openai_error(NOT_HTTP)})
    # A path of no service of the API stays unknown; gRPC at the same path is served.
    unknown = httpx.post(stack.http_url + "/saxgateway.v1.Nope/ListCells", json={})
    assert unknown.status_code == 404, unknown.text
    with sync_channel(stack.grpc_address) as channel:
        cells = gateway_pb2_grpc.SaxGatewayStub(channel).ListCells(
            pb.ListCellsRequest(), timeout=30
        )
    assert "/sax/test" in cells.cells


def test_a_clients_keepalive_pings_keep_its_idle_stream_on_the_gateway_port(
    stack: Stack, model: str
) -> None:
    # A client pinging every 5 s (grpc-go's shortest is 10 s) on an idle watch straight to a
    # gateway's port: grpc's server default takes a ping per 5 minutes without data, so the
    # third early one got GOAWAY too_many_pings, and the watch UNAVAILABLE "Too many pings".
    keepalive = [
        ("grpc.keepalive_time_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    gateway = f"127.0.0.1:{stack.settings.gateway_ports[0]}"
    with sync_channel(gateway, keepalive) as channel:
        watch = gateway_pb2_grpc.SaxGatewayStub(channel).WatchAddresses(
            pb.WatchAddressesRequest(model=model), timeout=19
        )
        assert len(next(watch).addresses) == 1
        with pytest.raises(grpc.RpcError) as ended:
            list(watch)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ended.value
