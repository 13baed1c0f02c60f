"""A gRPC or grpc-web call's reply headers, for the replies Envoy makes itself: those carry the
status in the headers of a reply with no body (trailers-only), for both kinds of client."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Mapping
from urllib.parse import unquote

import httpx
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from gateway.launch._replies import CODE_HEADER
from tests.e2e.test_grpc_web import _frame

WEB_PROTO = "application/grpc-web+proto"
WEB_TEXT = "application/grpc-web-text"


def native_headers(url: str, message: Message, headers: Mapping[str, str | None]) -> dict[str, str]:
    """The response headers and trailers of a native gRPC call to ``url`` over h2c (curl
    sends any header, grpc-timeout and content-encoding included; a header given as None is
    not sent), names in lower case."""
    args = ["curl", "--silent", "--http2-prior-knowledge", "--output", "/dev/null"]
    args += ["--dump-header", "-", "--data-binary", "@-"]
    sent = {"content-type": "application/grpc", "te": "trailers", **headers}
    for name, value in sent.items():
        if value is not None:
            args += ["--header", f"{name}: {value}"]
    # Envoy refuses some calls at their headers (no credential, a foreign Origin), before it
    # has read the body, and then resets the stream with NO_ERROR (RFC 9113 §8.1 lets a server
    # do so once it has answered). gRPC clients keep the status they were sent (grpcio,
    # measured); curl exits 92, and when the reset comes close behind the reply it drops the
    # reply's headers too: asked again, Envoy gives the same reply.
    for _ in range(10):
        done = subprocess.run([*args, url], input=_frame(message), capture_output=True, timeout=30)
        if done.returncode == 0 or (done.returncode == 92 and b"grpc-status" in done.stdout):
            break
    else:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    lines = done.stdout.decode().splitlines()
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


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
