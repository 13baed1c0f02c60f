"""Browser clients: grpc-web through Envoy (framed by hand, per the grpc-web spec) and CORS.

https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md: a message is a 5-byte prefix
(flag 0x00, big-endian length) and its bytes; the status comes last in a frame flagged 0x80
holding HTTP/1-style "name:value\\r\\n" trailers.
"""

from __future__ import annotations

import base64
import re
import secrets
import struct
from collections.abc import Iterator
from http.client import HTTPConnection

import httpx
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import openai_pb2 as openai_pb

from gateway.launch.stack import Stack
from tests.e2e._access_log import access_log_line
from tests.e2e._bodies import envoy_error
from tests.e2e._published import TEST_LM, published

ALLOWED = "http://allowed.example"
SERVICE = "/saxgateway.v1.SaxGateway"
OPENAI = "/saxgateway.v1.OpenAIGateway"


def _frame(message: Message) -> bytes:
    data = message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


def _unframe(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The messages and the trailers of a grpc-web response body."""
    messages, trailers = [], {}
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        payload, body = body[5 : 5 + length], body[5 + length :]
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def _b64decode_chunks(text: bytes) -> bytes:
    """grpc-web-text bodies are base64 chunks, each padded on its own, one after another."""
    return b"".join(base64.b64decode(c) for c in re.findall(rb"[A-Za-z0-9+/]+=*", text))


def _call(
    http: httpx.Client,
    method: str,
    request: Message,
    *,
    text: bool = False,
    service: str = SERVICE,
    request_id: str | None = None,
) -> tuple[httpx.Response, list[bytes], dict[str, str]]:
    content_type = "application/grpc-web-text" if text else "application/grpc-web+proto"
    body = _frame(request)
    response = http.post(
        f"{service}/{method}",
        content=base64.b64encode(body) if text else body,
        headers={
            "content-type": content_type,
            "accept": content_type,  # Envoy answers grpc-web-text only when asked to
            "x-grpc-web": "1",
            "x-user-agent": "grpc-web-javascript/0.1",
            "origin": ALLOWED,
            **({"x-request-id": request_id} if request_id else {}),
        },
    )
    raw = _b64decode_chunks(response.content) if text else response.content
    messages, trailers = _unframe(raw)
    if not trailers:  # a trailers-only response carries the status in the headers
        trailers = {k: v for k, v in response.headers.items() if k.startswith("grpc-")}
    return response, messages, trailers


@pytest.fixture
def model(http: httpx.Client) -> Iterator[str]:
    name = "/sax/test/grpc-web"
    request = {"model": name, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
    published = http.post("/publish", json={**request, "overrides": {"text": "hello grpc web"}})
    assert published.status_code == 200, published.text
    assert http.post("/wait_for_ready", json={"model": name}).status_code == 200
    yield name
    http.post("/unpublish", json={"model": name})


def test_grpc_web_unary_call(http: httpx.Client) -> None:
    response, messages, trailers = _call(http, "GetInfo", pb.GetInfoRequest())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web+proto"
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert trailers["grpc-status"] == "0"
    [data] = messages
    info = pb.GetInfoResponse.FromString(data)
    assert info.message == "HTTP Server for SAX Client"


def test_grpc_web_text_call(http: httpx.Client) -> None:
    response, messages, trailers = _call(http, "GetInfo", pb.GetInfoRequest(), text=True)
    assert response.headers["content-type"] == "application/grpc-web-text+proto"
    assert trailers["grpc-status"] == "0"
    assert pb.GetInfoResponse.FromString(messages[0]).message == "HTTP Server for SAX Client"


def test_a_grpc_web_text_request_gets_a_text_reply_when_it_accepts_one(http: httpx.Client) -> None:
    # The grpc-web protocol has the client ask for a text reply with Accept, as grpc-web's
    # JavaScript client does in text mode (docs/clients.md); without it, Envoy answers in
    # binary, which such a client reads as binary: no client that follows the spec sees it.
    body = base64.b64encode(_frame(pb.GetInfoRequest()))
    headers = {"content-type": "application/grpc-web-text", "x-grpc-web": "1"}
    binary = http.post(f"{SERVICE}/GetInfo", content=body, headers=headers)
    assert binary.headers["content-type"] == "application/grpc-web+proto"
    messages, trailers = _unframe(binary.content)
    assert trailers["grpc-status"] == "0"
    assert pb.GetInfoResponse.FromString(messages[0]).message == "HTTP Server for SAX Client"


def test_grpc_web_server_stream(http: httpx.Client, model: str) -> None:
    request = pb.GenerateStreamRequest(model=model, query="q")
    _, messages, trailers = _call(http, "GenerateStream", request)
    assert trailers["grpc-status"] == "0"
    stream = [pb.GenerateStreamResponse.FromString(m) for m in messages]
    assert [d.text for m in stream for d in m.deltas] == ["hello", " grpc", " web"]
    assert stream[-1].done
    assert [t.text for t in stream[-1].texts] == ["hello grpc web"]


def test_grpc_web_error_status(http: httpx.Client) -> None:
    request = pb.ListCellRequest(model="/sax/test/no-such-model")
    response, messages, trailers = _call(http, "ListCell", request)
    assert response.status_code == 200  # grpc-web reports errors in grpc-status
    assert messages == []
    assert trailers["grpc-status"] == "5"  # NOT_FOUND
    assert "not published" in trailers["grpc-message"]


def test_the_access_log_records_the_status_a_grpc_web_call_ended_with(
    stack: Stack, http: httpx.Client, model: str
) -> None:
    # grpc_web moves a reply's trailers into its body, and Envoy then read the status of every
    # grpc-web call that sent a message as UNKNOWN: 2 in the access log for calls that ended
    # well, and for streams that failed half-way.
    overrides = {"text": "a b c", "fail_after_tokens": "1"}
    with published(stack, "/sax/test/grpc-web-fails", TEST_LM, overrides) as failing:
        stream, fails = (pb.GenerateStreamRequest(model=m, query="q") for m in (model, failing))
        calls: list[tuple[str, str, Message, bool, int]] = [
            (SERVICE, "GetInfo", pb.GetInfoRequest(), False, 0),
            (SERVICE, "GetInfo", pb.GetInfoRequest(), True, 0),
            (SERVICE, "GenerateStream", stream, False, 0),
            (SERVICE, "GenerateStream", fails, False, 14),  # UNAVAILABLE after a token
            (OPENAI, "ListOpenAIModels", openai_pb.ListOpenAIModelsRequest(), False, 0),
        ]
        for service, method, request, text, code in calls:
            request_id = f"grpc-web-log-{secrets.token_hex(6)}"
            _, messages, trailers = _call(
                http, method, request, text=text, service=service, request_id=request_id
            )
            assert messages, (method, trailers)
            assert trailers["grpc-status"] == str(code), (method, trailers)
            line = access_log_line(stack, request_id)
            assert (line["status"], line["grpc_status"]) == (200, code), (method, line)


def test_grpc_web_calls_to_made_up_paths_leave_no_stats_behind(
    stack: Stack, http: httpx.Client
) -> None:
    # Envoy's grpc_web filter made three stats of every path a call named (service, method,
    # status), never freed: any client could grow Envoy's memory and the scrape's series
    # without bound by naming new methods.
    marker = secrets.token_hex(5)
    for n in range(5):
        service = f"/probe{marker}.S{n}"
        _, _, trailers = _call(http, f"M{n}", pb.GetInfoRequest(), service=service)
        assert trailers["grpc-status"] != "0"
    _call(http, "GetInfo", pb.GetInfoRequest())  # a real method: no stats either, and no harm
    envoy = stack.envoy
    stats = httpx.get(f"http://{envoy.admin_address}:{envoy.admin_port}/stats", timeout=10)
    assert stats.status_code == 200
    assert marker not in stats.text
    assert "grpc-web" not in stats.text


@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x00\x00", struct.pack(">BI", 0, 1000) + b"abc"],
    ids=["empty", "prefix cut short", "message cut short"],
)
def test_a_call_without_a_whole_request_message_is_invalid_argument(
    http: httpx.Client, method: str, body: bytes
) -> None:
    # grpc.aio never ran the handler and sent no status: the call hung until the caller gave
    # up (minutes through Envoy, for ever on the gateway's port without a deadline).
    response = http.post(
        f"{SERVICE}/{method}",
        content=body,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        timeout=10,
    )
    assert (response.status_code, response.content) == (200, b"")
    message = "the call carries no complete request message: a gRPC call sends exactly one"
    assert response.headers["grpc-status"] == "3"  # INVALID_ARGUMENT
    assert response.headers["grpc-message"] == message
    status = status_pb2.Status.FromString(
        base64.b64decode(response.headers["grpc-status-details-bin"] + "==")
    )
    info = error_details_pb2.RequestInfo()
    assert [d.Unpack(info) for d in status.details] == [True]
    assert (status.code, status.message, info.request_id) == (
        3,
        message,
        response.headers["x-request-id"],
    )
    request = pb.ListCellsRequest()
    assert _call(http, "ListCells", request)[2]["grpc-status"] == "0"


def _preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options(
        f"{SERVICE}/GetInfo",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
        },
    )


def test_cors_preflight_allows_a_configured_origin(http: httpx.Client) -> None:
    response = _preflight(http, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"} <= allowed
    # Every response echoes the caller's x-request-id (README): a page may send one too.
    assert "x-request-id" in allowed
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message"} <= exposed


def test_cors_preflight_ignores_another_origin(http: httpx.Client) -> None:
    response = _preflight(http, "http://evil.example")
    assert not any(h.startswith("access-control-") for h in response.headers)


def test_cors_actual_request_from_another_origin_is_refused(http: httpx.Client) -> None:
    # A browser would hide the answer, but a "simple request" still reaches the server: Envoy
    # refuses any request from an origin it does not allow (docs/security.md).
    response = http.get("/", headers={"origin": "http://evil.example"})
    assert response.status_code == 403
    assert response.json() == envoy_error(
        response, 7, "cross-origin request refused: Origin is not allowed"
    )
    assert "access-control-allow-origin" not in response.headers


def test_sse_streams_keep_cors_and_the_origin_check(http: httpx.Client, model: str) -> None:
    # The stream routes turn the filters an HTTP path never needs off (health_check,
    # grpc_web), and the origin check only runs for requests that carry an Origin: a browser
    # on an allowed origin still streams with CORS headers, a foreign one is still refused.
    body = {"model": model, "query": "q"}
    with http.stream("POST", "/generate_stream", json=body, headers={"origin": ALLOWED}) as ok:
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert ok.headers["content-type"] == "text/event-stream"
        text = "".join(line for line in ok.iter_lines() if line.startswith("data:"))
    assert '"text":"hello grpc web"' in text
    refused = http.post("/generate_stream", json=body, headers={"origin": "http://evil.example"})
    assert refused.status_code == 403
    assert refused.json() == envoy_error(
        refused, 7, "cross-origin request refused: Origin is not allowed"
    )
    # Without an Origin (curl, SDKs) the check is skipped, and the health check is still
    # answered by Envoy on its own path.
    with http.stream("POST", "/generate_stream", json=body) as plain:
        assert plain.status_code == 200
        assert "access-control-allow-origin" not in plain.headers
    assert http.get("/healthz").status_code == 200


def test_the_replies_envoy_answers_itself_are_readable_by_an_allowed_origin(
    http: httpx.Client,
) -> None:
    # CORS did not reach the routes Envoy answers itself (direct responses): a page on an
    # allowed origin could not read /openapi.json, and its refused calls were network errors
    # ("Failed to fetch") in place of the documented 413, 415 and 400 JSON.
    origin = {"origin": ALLOWED}
    grpc_web = {**origin, "content-type": "application/grpc-web+json"}
    replies = [
        (http.get("/openapi.json", headers=origin), 200),
        (http.post("/generate", content=b"{}", headers={**origin, "grpc-timeout": "soon"}), 400),
        (http.post("/generate", content=b"x", headers={**origin, "content-encoding": "gzip"}), 415),
        (http.post("/saxgateway.v1.SaxGateway/GetInfo", content=b"", headers=grpc_web), 415),
    ]
    for response, status in replies:
        assert response.status_code == status, response.request.url
        assert response.headers["access-control-allow-origin"] == ALLOWED, response.request.url
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert "x-request-id" in exposed
    # A body declared over the limit is refused before it is sent.
    url = httpx.URL(str(http.base_url))
    connection = HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.putrequest("POST", "/generate")
        connection.putheader("origin", ALLOWED)
        connection.putheader("content-length", "999999999999")
        connection.endheaders()
        too_large = connection.getresponse()
        too_large.read()
    finally:
        connection.close()
    assert too_large.status == 413
    assert too_large.getheader("access-control-allow-origin") == ALLOWED
    # A request without an Origin (curl, SDKs) is allowed no origin.
    assert "access-control-allow-origin" not in http.get("/openapi.json").headers
