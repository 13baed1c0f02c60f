"""HEAD wherever GET is (RFC 9110 9.3.2): the GET's status and headers, and no body. Uptime
checkers send `HEAD /`; it was a 405 `allow: GET` on every route the transcoder serves. Sent
on a raw socket, since a client that knows HEAD replies have no body would hide one Envoy
sent: the bytes after the headers must be the next reply on the connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from gateway.service._streams import HTTP_METHOD_HEADER
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, published

MODEL = "/sax/test/head"
# What differs between two replies to the same request.
_PER_REPLY = {"date", "x-request-id"}
_NEXT = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, TEST_LM) as name:
        yield name


def _head(stack: Stack, path: str, timeout: float = 30) -> tuple[str, dict[str, str], bytes]:
    """HEAD ``path`` and a GET of / after it on one HTTP/1.1 connection: the HEAD reply's
    status line and headers, and every byte after them (which should be the GET's reply)."""
    url = httpx.URL(stack.http_url)
    head = f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    with socket.create_connection((url.host, url.port), timeout=timeout) as sock:
        sock.sendall(head + _NEXT)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    first, _, rest = reply.partition(b"\r\n\r\n")
    status_line, *lines = first.decode().split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status_line, fields, rest


def _as_get(response: httpx.Response) -> tuple[str, dict[str, str]]:
    status = f"HTTP/1.1 {response.status_code} {response.reason_phrase}"
    fields = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _PER_REPLY}
    return status, fields


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/listcells",
        "/v1/cells",
        f"/listcell?model={MODEL}",
        f"/v1{MODEL}",
        "/listall?sax_cell=/sax/test",
        "/v1/sax/test:listModels",
        f"/getacl?name={MODEL}",
        f"/v1{MODEL}:getAcl",
        "/stats?name=/sax/test",
        f"/v1{MODEL}:stats",
        "/v1/models",
        f"/v1/models{MODEL}",
        # Errors too: the gateway's (404 JSON) and OpenAI's envelope, written by a filter.
        "/listcell?model=/sax/test/nosuch",
        "/v1/models/nosuch",
        # A reply Envoy makes itself (the transcoder's 400 for an unknown query parameter).
        "/listcells?colour=blue",
    ],
)
def test_head_answers_as_get_without_a_body(
    stack: Stack, http: httpx.Client, model: str, path: str
) -> None:
    status, fields, rest = _head(stack, path)
    assert (status, {k: v for k, v in fields.items() if k not in _PER_REPLY}) == _as_get(
        http.get(path)
    )
    assert fields["x-request-id"]
    if fields.get("connection") == "close":  # as after the GET: Envoy's 400 ends it
        assert rest == b""
        return
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:200]  # no body came before it
    assert rest.endswith(b'{"message":"HTTP Server for SAX Client","version":"0.1.0"}')


@pytest.mark.parametrize("path", [f"/watch?model={MODEL}", f"/v1{MODEL}:watch"])
def test_head_of_a_stream_is_its_headers_and_then_the_next_reply(
    stack: Stack, model: str, path: str
) -> None:
    # A HEAD ran as its watch, which ends only at its deadline (its events were dropped):
    # the connection's next request was never answered.
    status, fields, rest = _head(stack, path, timeout=10)
    assert status == "HTTP/1.1 200 OK"
    assert fields["content-type"] == "text/event-stream"
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:200]
    assert rest.endswith(b'{"message":"HTTP Server for SAX Client","version":"0.1.0"}')


def test_head_of_a_stream_of_no_model_is_the_gets_404(stack: Stack, http: httpx.Client) -> None:
    path = "/watch?model=/sax/test/nosuch"
    status, fields, rest = _head(stack, path, timeout=10)
    assert (status, {k: v for k, v in fields.items() if k not in _PER_REPLY}) == _as_get(
        http.get(path)
    )
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:200]


def test_no_client_makes_its_watch_a_head(stack: Stack, model: str) -> None:
    # Envoy overwrites the header that tells the gateway a call is a HEAD on every request.
    request = pb.WatchAddressesRequest(model=model)
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        watch = stub.WatchAddresses(request, metadata=((HTTP_METHOD_HEADER, "HEAD"),), timeout=30)
        assert len(next(watch).addresses) == 1
        watch.cancel()


def test_head_where_get_is_not_taken_is_a_405_naming_both(stack: Stack, http: httpx.Client) -> None:
    status, fields, rest = _head(stack, "/generate")
    assert (status, fields["allow"]) == ("HTTP/1.1 405 Method Not Allowed", "POST")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:200]
    # A route that takes GET takes HEAD too, and says so.
    assert http.post("/listcells", content=b"{}").headers["allow"] == "GET, HEAD"
