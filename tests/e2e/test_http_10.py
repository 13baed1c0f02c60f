"""HTTP/1.0 clients are served: ApacheBench, and nginx's proxy_pass unless it is told
`proxy_http_version 1.1`, speak it. Envoy refused them before any route (426 "Upgrade
Required"), so a gateway behind a default nginx answered nothing else."""

from __future__ import annotations

import json
import socket

import httpx

from gateway.launch.stack import Stack
from tests.e2e._published import TEST_LM, published


def _http_10(stack: Stack, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Sends ``request`` and reads until Envoy closes the connection, as HTTP/1.0 ends a
    reply of unknown length: the status line, the headers (lower-case names), the body."""
    url = httpx.URL(stack.http_url)
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return status_line, headers, body


def _post(path: str, body: dict[str, object], host: bool = True) -> bytes:
    data = json.dumps(body).encode()
    host_line = b"Host: localhost\r\n" if host else b""
    head = f"POST {path} HTTP/1.0\r\nContent-Length: {len(data)}\r\n".encode()
    return head + host_line + b"Content-Type: application/json\r\n\r\n" + data


def test_http_10_calls_get_the_answers_http_11_ones_do(stack: Stack) -> None:
    with published(stack, "/sax/test/http10", TEST_LM, {"text": "one two"}) as model:
        expected = httpx.post(f"{stack.http_url}/generate", json={"model": model, "query": "q"})
        for host in (True, False):  # HTTP/1.0 may leave Host out
            status, headers, body = _http_10(
                stack, _post("/generate", {"model": model, "query": "q"}, host)
            )
            assert (status, headers["content-type"]) == ("HTTP/1.0 200 OK", "application/json")
            assert json.loads(body) == expected.json()
        # A stream: no chunked encoding in HTTP/1.0, so the closed connection ends it.
        status, headers, body = _http_10(
            stack, _post("/generate_stream", {"model": model, "query": "q"})
        )
    assert (status, headers["content-type"], headers["connection"]) == (
        "HTTP/1.0 200 OK",
        "text/event-stream",
        "close",
    )
    events = [json.loads(line.removeprefix(b"data: ")) for line in body.split(b"\n\n") if line]
    assert "".join(d["text"] for e in events for d in e["deltas"]) == "one two"
    assert events[-1]["done"] is True
