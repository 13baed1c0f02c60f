"""A gRPC or grpc-web call's reply headers, for the replies Envoy makes itself: those carry the
status in the headers of a reply with no body (trailers-only), for both kinds of client."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import h2.events
import httpx
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from gateway.launch._replies import CODE_HEADER
from tests.e2e._h2 import h2_connection, request_headers
from tests.e2e.test_grpc_web import _frame

# What ends the wait for a reply: the stream ends or is reset, or the connection goes.
_ENDS = (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)
WEB_PROTO = "application/grpc-web+proto"
WEB_TEXT = "application/grpc-web-text"


def native_headers(url: str, message: Message, headers: Mapping[str, str | None]) -> dict[str, str]:
    """The response headers and trailers of a native gRPC call to ``url`` over h2c (a raw
    HTTP/2 client sends any header, grpc-timeout and content-encoding included; a header given
    as None is not sent), names in lower case.

    Envoy refuses some calls at their headers (no credential, a foreign Origin), before it has
    read the body, and then resets the stream with NO_ERROR (RFC 9113 §8.1 lets a server do so
    once it has answered). gRPC clients keep the status they were sent (grpcio, measured); curl
    exited 92 and at times dropped the reply, so the reply is read here frame by frame."""
    sent = {"content-type": "application/grpc", "te": "trailers", **headers}
    body, got = _frame(message), dict[str, str]()
    with h2_connection(url, timeout=30) as (sock, conn, authority):
        request = request_headers(authority, "POST", urlsplit(url).path)
        request += [(k, v) for k, v in sent.items() if v is not None]
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, request)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            # As much of the body as the windows allow, until the reply ends the stream.
            while body and not got and conn.local_flow_control_window(stream) > 0:
                size = min(len(body), conn.local_flow_control_window(stream), 16_384)
                chunk, body = body[:size], body[size:]
                conn.send_data(stream, chunk, end_stream=not body)
            sock.sendall(conn.data_to_send())
            data = sock.recv(65_536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    got.update((k.decode().lower(), v.decode().strip()) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, _ENDS):
                    done = True
            sock.sendall(conn.data_to_send())
    assert "grpc-status" in got, got
    return got


def grpc_web_call(
    url: str, message: Message, headers: dict[str, str], content_type: str = WEB_PROTO
) -> httpx.Response:
    """A grpc-web call to ``url`` (binary, or base64 for grpc-web-text)."""
    body = _frame(message)
    if content_type == WEB_TEXT:
        body = base64.b64encode(body)
    sent = {"content-type": content_type, "accept": content_type, "x-grpc-web": "1", **headers}
    return httpx.post(url, content=body, headers=sent, timeout=30)


def status_details(encoded: str) -> status_pb2.Status:
    """The google.rpc.Status of a grpc-status-details-bin header (base64, maybe unpadded)."""
    return status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))


def envoy_status(code: int, message: str, request_id: str) -> status_pb2.Status:
    """The google.rpc.Status of a reply Envoy made itself to a gRPC or grpc-web call, as the
    gateway's own errors have it: the code, the message, and a RequestInfo naming the ID."""
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(error_details_pb2.RequestInfo(request_id=request_id))
    return status


def trailers_only_message(
    response: httpx.Response, code: int, content_type: str = WEB_PROTO
) -> str:
    """Asserts a grpc-web error reply Envoy made itself with no message (HTTP 200, grpc-status
    ``code`` in the headers, no body) whose grpc-status-details-bin is the Status a gRPC client
    gets (`envoy_status`); returns its grpc-message, percent-decoded."""
    assert response.status_code == 200, (response.status_code, response.headers)
    text = content_type == WEB_TEXT
    assert response.headers["content-type"] == (WEB_TEXT + "+proto" if text else WEB_PROTO)
    assert response.headers["grpc-status"] == str(code), response.headers
    assert response.content == b""
    assert CODE_HEADER not in response.headers
    message = unquote(response.headers["grpc-message"])
    details = status_details(response.headers["grpc-status-details-bin"])
    assert details == envoy_status(code, message, response.headers["x-request-id"])
    return message
