"""examples/node/client.js (@grpc/grpc-js) through Envoy's gRPC port."""

from __future__ import annotations

import json
import re

from gateway.launch.stack import Stack
from tests.e2e._node import ROOT, example_steps, node_program
from tests.e2e._published import published

LM2B = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"


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


def test_the_clients_page_snippet_generates_with_the_seed_model(stack: Stack) -> None:
    """docs/clients.md's @grpc/proto-loader program, as written but for the address, the model
    name and printing JSON: its extra inputs must be ones the seed's model (LmCloudSpmd2BTest,
    which the snippet names) declares, or every reader's first call is INVALID_ARGUMENT."""
    page = (ROOT / "docs" / "clients.md").read_text()
    snippet = re.search(r"```js\n(.*?)```", page, re.S)
    assert snippet is not None
    program = snippet.group(1)
    assert '"localhost:8888"' in program and 'model: "/sax/test/lm2b"' in program
    program = program.replace('"localhost:8888"', json.dumps(stack.grpc_address))
    printed = "JSON.stringify(error ? {code: error.code, details: error.details} : response)"
    program = program.replace("console.log(error ?? response)", f"console.log({printed})")
    with published(stack, "/sax/test/docs-node", LM2B) as model:
        program = program.replace('"/sax/test/lm2b"', json.dumps(model))
        answer = node_program(program, package="@grpc/proto-loader")
    assert set(answer) == {"texts"}, answer
    assert len(answer["texts"]) == 4  # the stand-in's num_samples
    assert all(isinstance(t["text"], str) and t["score"] < 0 for t in answer["texts"])
