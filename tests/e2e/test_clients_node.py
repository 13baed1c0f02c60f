"""examples/node/client.js (@grpc/grpc-js) through Envoy's gRPC port."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.launch.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "@grpc" / "grpc-js").exists(),
    reason="node and `npm ci` (make contract) are needed",
)


def test_node_client_publishes_generates_streams_and_unpublishes(stack: Stack) -> None:
    model = "/sax/test/node-client"
    result = subprocess.run(
        [str(NODE), ROOT / "examples" / "node" / "client.js", stack.grpc_address, model],
        env={"PATH": "/usr/bin:/bin"},  # protos from release/proto only
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"step": "publish", "model": model, "path": "sax_gateway.testing.TestLM"},
        {"step": "ready", "active_replicas": 1},
        {"step": "generate", "texts": ["hello from node"]},
        {"step": "extra_inputs", "texts": ["hello from"]},
        {"step": "stream", "deltas": ["hello", " from", " node"], "text": "hello from node"},
        {"step": "unpublish", "model": model},
    ]
