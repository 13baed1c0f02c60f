"""A call to a published model that no replica serves (a cell with no model server to load it,
as when more models are published than ``--max-models-per-server`` lets load): every face
waits for a replica as long as a unary call would (``--default-timeout``), then fails with the
unary call's error. Streams waited for their whole stream deadline (600 s) without a byte, and
so did an OpenAI completion, which may decode that long.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._grpc import sync_channel
from tests._stacks import (
    CELL,
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
)
from tests.e2e._bodies import gateway_error
from tests.e2e._published import TEST_LM, publish_body

DEFAULT_TIMEOUT = 2.0
MODEL = f"{CELL}/unserved"
MESSAGE = f"no replica of {MODEL} answered within the deadline (0 replicas are ready)"
# Well above the default timeout, far below the stream timeout (600 s) the bug waited for.
GIVES_UP_WITHIN = 12.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An admin without model servers, and a gateway whose default timeout is short; its
    stream timeout is the default 600 s."""
    base = tmp_path_factory.mktemp("unserved")
    settings = StackSettings(
        gateway=dataclasses.replace(gateway_settings(base), default_timeout=DEFAULT_TIMEOUT),
        cell=cell_settings(base, servers=0),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "the stack without model servers") as running:
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            published = http.post("/publish", json=publish_body(MODEL, TEST_LM))
            assert published.status_code == 200, published.text
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.http_url, timeout=GIVES_UP_WITHIN) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"model": MODEL, "query": "q"}),
        ("/generate_stream", {"model": MODEL, "query": "q"}),
        (f"/v1{MODEL}:streamGenerate", {"query": "q"}),
    ],
)
def test_a_native_call_gives_up_when_a_unary_one_would(
    http: httpx.Client, path: str, body: dict[str, object]
) -> None:
    started = time.monotonic()
    response = http.post(path, json=body)  # a ReadTimeout here: it waited on
    assert DEFAULT_TIMEOUT * 0.8 < time.monotonic() - started < GIVES_UP_WITHIN
    assert response.status_code == 504, response.text
    assert response.json() == gateway_error(response, 4, MESSAGE)


def test_a_native_grpc_stream_gives_up_when_a_unary_call_would(stack: Stack) -> None:
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            list(stub.GenerateStream(pb.GenerateStreamRequest(model=MODEL, query="q"), timeout=30))
    assert time.monotonic() - started < GIVES_UP_WITHIN
    assert (failed.value.code(), failed.value.details()) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        MESSAGE,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_an_openai_completion_gives_up_when_a_unary_call_would(
    http: httpx.Client, stream: bool
) -> None:
    started = time.monotonic()
    body = {"model": MODEL, "prompt": "q", "max_tokens": 4, "stream": stream}
    response = http.post("/v1/completions", json=body)
    assert time.monotonic() - started < GIVES_UP_WITHIN
    assert response.status_code == 504, response.text
    error = {"message": MESSAGE, "type": "timeout_error", "param": None, "code": "timeout"}
    assert json.loads(response.text) == {"error": error}
