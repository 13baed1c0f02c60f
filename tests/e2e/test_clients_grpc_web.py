"""examples/node/grpc_web.mjs: a real grpc-web client library (Connect-ES, what browser apps
use) through Envoy over HTTP/1.1, beside test_grpc_web.py's hand-made frames: unary, a server
stream, and a google.rpc.BadRequest read from the grpc-web trailers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.launch.stack import Stack
from tests.e2e._published import TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "@connectrpc" / "connect-node").exists(),
    reason="node and `npm ci` (make contract) are needed",
)


def test_connect_grpc_web_client_calls_streams_and_reads_bad_request(stack: Stack) -> None:
    with published(stack, "/sax/test/grpc-web-node", TEST_LM, {"text": "hello grpc web"}) as model:
        result = subprocess.run(
            [str(NODE), ROOT / "examples" / "node" / "grpc_web.mjs", stack.http_url, model],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"step": "generate", "texts": ["hello grpc"]},
        {
            "step": "stream",
            "deltas": ["hello", " grpc", " web"],
            "done": True,
            "text": "hello grpc web",
        },
        {"step": "error", "code": "InvalidArgument", "fields": ["model"]},
    ]
