"""examples/node/client.js (@grpc/grpc-js) through Envoy's gRPC port."""

from __future__ import annotations

from gateway.launch.stack import Stack
from tests.e2e._node import example_steps


def test_node_client_publishes_generates_streams_and_unpublishes(stack: Stack) -> None:
    model = "/sax/test/node-client"
    steps = example_steps("client.js", stack.grpc_address, model, package="@grpc/grpc-js")
    assert steps == [
        {"step": "publish", "model": model, "path": "sax_gateway.testing.TestLM"},
        {"step": "ready", "active_replicas": 1},
        {"step": "generate", "texts": ["hello from node"]},
        {"step": "extra_inputs", "texts": ["hello from"]},
        {"step": "stream", "deltas": ["hello", " from", " node"], "text": "hello from node"},
        {"step": "unpublish", "model": model},
    ]
