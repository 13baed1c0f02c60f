"""examples/node/grpc_web.mjs: a real grpc-web client library (Connect-ES, what browser apps
use) through Envoy over HTTP/1.1, beside test_grpc_web.py's hand-made frames: unary, a server
stream, and a google.rpc.BadRequest read from the grpc-web trailers; and the same library in
a page in Chromium, where CORS decides what the page may send and read."""

from __future__ import annotations

from pathlib import Path

from gateway.launch.stack import Stack
from tests.e2e._browser import run_in_chromium
from tests.e2e._node import example_steps
from tests.e2e._published import TEST_LM, published


def test_connect_grpc_web_client_calls_streams_and_reads_bad_request(stack: Stack) -> None:
    with published(stack, "/sax/test/grpc-web-node", TEST_LM, {"text": "hello grpc web"}) as model:
        steps = example_steps(
            "grpc_web.mjs", stack.http_url, model, package="@connectrpc/connect-node"
        )
    assert steps == [
        {"step": "generate", "texts": ["hello grpc"]},
        {
            "step": "stream",
            "deltas": ["hello", " grpc", " web"],
            "done": True,
            "text": "hello grpc web",
        },
        {"step": "error", "code": "InvalidArgument", "fields": ["model"]},
    ]


def test_grpc_web_from_a_browser_page_of_an_allowed_origin(stack: Stack, tmp_path: Path) -> None:
    origin = "http://allowed.example"  # the session stack's --cors-origin
    failing = {"text": "a b c d", "delay_ms": "300", "fail_after_tokens": "2"}
    with (
        published(stack, "/sax/test/grpc-web-page", TEST_LM, {"text": "hello page"}) as model,
        published(stack, "/sax/test/grpc-web-page-fails", TEST_LM, failing) as fails,
    ):
        page = run_in_chromium("grpc_web.mjs", [stack.http_url, origin, model, fails], tmp_path)
    assert page == {
        "errors": [],
        "generate": ["hello page"],
        "stream": [
            {"deltas": ["hello"], "done": False},
            {"deltas": [" page"], "done": False},
            {"deltas": [], "done": True},
        ],
        # The page reads the BadRequest and the request ID from headers CORS exposes.
        "bad": {"code": "InvalidArgument", "fields": ["model"], "request_id": "from-the-page"},
        # The gateway's answer or the page's own timer, whichever comes first.
        "deadline": {**page["deadline"], "code": "DeadlineExceeded", "fields": []},
        "aborted": {"code": "Canceled", "fields": [], "request_id": None},
        "stream_error": {
            "code": "Unavailable",
            "fields": [],
            "request_id": page["stream_error"]["request_id"],
            "seen": ["a", " b"],
        },
    }
    assert page["stream_error"]["request_id"]  # a stream's headers came before its error
