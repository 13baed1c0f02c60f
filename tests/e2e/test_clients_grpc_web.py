"""examples/node/grpc_web.mjs: a real grpc-web client library (Connect-ES, what browser apps
use) through Envoy over HTTP/1.1, beside test_grpc_web.py's hand-made frames: unary, a server
stream, and a google.rpc.BadRequest read from the grpc-web trailers."""

from __future__ import annotations

from gateway.launch.stack import Stack
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
