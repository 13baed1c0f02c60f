"""One HTTP/2 stream that breaks the protocol's rules fails alone: the other calls on its
connection go on.

A header name in upper case, or a connection-specific header (`connection`), makes a stream
malformed (RFC 9113, 8.2). Envoy closed the whole connection for it by default, so one caller
behind a shared connection (a sidecar, a proxy, a gRPC channel) cut every other call on it; a
stream half-way through its tokens ended without them. grpcio and curl never send such headers,
hence a raw HTTP/2 client (h2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import h2.events
import pytest

from gateway.launch.stack import Stack
from tests.e2e._h2 import h2_connection, request_headers
from tests.e2e._published import TEST_LM, published

SLOW = "/sax/test/h2-faults"
TOKENS = 6
STREAM, BAD = 1, 3  # the streams' IDs: a client's are odd, in order


@pytest.fixture(scope="module")
def slow(stack: Stack) -> Iterator[str]:
    # 6 tokens 0.2 s apart: the bad stream is sent while this one is half-way.
    overrides = {"delay_ms": "200", "length": str(TOKENS), "text": "t"}
    with published(stack, SLOW, TEST_LM, overrides) as name:
        yield name


def _two_streams(url: str, model: str, bad: tuple[str, str]) -> tuple[list[str], bytes]:
    """Opens a token stream on one connection, sends a stream with the ``bad`` header once the
    first token arrived, and reads until both ended or the connection did: (what happened to
    the streams and the connection, in order; the token stream's body)."""
    happened: list[str] = []
    body = b""
    with h2_connection(url, timeout=20, normalize=False) as (sock, conn, authority):
        request = [
            *request_headers(authority, "POST", "/generate_stream"),
            ("content-type", "application/json"),
        ]
        conn.send_headers(STREAM, request)
        conn.send_data(STREAM, json.dumps({"model": model, "query": "q"}).encode(), end_stream=True)
        sock.sendall(conn.data_to_send())
        ended: set[int] = set()
        while ended != {STREAM, BAD}:
            data = sock.recv(65536)
            if not data:
                happened.append("connection closed")
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if not body:  # the first token: now the bad stream
                        conn.send_headers(
                            BAD, [*request_headers(authority, "GET", "/"), bad], end_stream=True
                        )
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
                    happened.append(f"stream {event.stream_id} ended")
                elif isinstance(event, h2.events.StreamReset):
                    ended.add(event.stream_id)
                    happened.append(f"stream {event.stream_id} reset {event.error_code!r}")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    happened.append(f"GOAWAY {event.error_code!r}")
                    ended = {STREAM, BAD}
            sock.sendall(conn.data_to_send())
    return happened, body


@pytest.mark.parametrize("bad", [("X-Upper-Case", "1"), ("connection", "close")])
def test_a_malformed_stream_is_reset_alone(stack: Stack, slow: str, bad: tuple[str, str]) -> None:
    happened, body = _two_streams(stack.http_url, slow, bad)
    assert happened == [
        f"stream {BAD} reset <ErrorCodes.PROTOCOL_ERROR: 1>",
        f"stream {STREAM} ended",
    ]
    events = [json.loads(line[len("data: ") :]) for line in body.decode().split("\n\n") if line]
    assert len(events) == TOKENS + 1
    assert [e["done"] for e in events] == [False] * TOKENS + [True]
    assert events[-1]["texts"][0]["text"] == " ".join(["t"] * TOKENS)
