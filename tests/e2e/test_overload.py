"""An overloaded model (every replica answers RESOURCE_EXHAUSTED) through the whole stack: each
face answers 429 RESOURCE_EXHAUSTED with ``Retry-After`` after the Sax client's overload window
(``--overloaded-after``, 1 s), long before the gateway's default timeout (60 s). The gateway
retried it for the whole timeout, and the OpenAI SDKs then retried twice more: a model that
stayed overloaded took about three minutes to surface, where OpenAI answers 429 at once.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest
import saxgateway_client
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

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 60.0  # the gateway's own default
MODEL = f"{CELL}/busy"
MESSAGE = (
    f"{MODEL} is overloaded; retry later "
    "(TestLM is at its max_in_flight (0 calls at once): ResourceExhausted)"
)
# Far under DEFAULT_TIMEOUT, with room for a loaded machine: the 429 came after the window,
# not the deadline (a behaviour check, not a timing benchmark).
WELL_BEFORE = 10.0
RATE_LIMITED = {
    "error": {
        "message": MESSAGE,
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two model servers, both serving a model that refuses every call as overloaded, and a
    gateway with its default 60 s timeout."""
    base = tmp_path_factory.mktemp("overload")
    config = base / "config.yaml"
    config.write_text(f"models:\n  {MODEL}:\n    chat_template_name: chatml\n")
    gateway = gateway_settings(base, config_file=str(config))
    settings = StackSettings(
        gateway=dataclasses.replace(gateway, default_timeout=DEFAULT_TIMEOUT),
        cell=cell_settings(base, servers=2, poll_interval=0.3),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "the stack with an overloaded model") as running:
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            body = publish_body(MODEL, TEST_LM, replicas=2, max_in_flight="0")
            assert http.post("/publish", json=body).status_code == 200
            ready = http.post("/wait_for_ready", json={"model": MODEL, "replicas": 2})
            assert ready.status_code == 200, ready.text
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    # The old code answered after 60 s: a ReadTimeout here.
    with httpx.Client(base_url=stack.http_url, timeout=WELL_BEFORE) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"model": MODEL, "query": "q"}),
        (f"/v1{MODEL}:generate", {"query": "q"}),
        ("/score", {"model": MODEL, "prefix": "p", "suffix": ["s"]}),
        ("/generate_stream", {"model": MODEL, "query": "q"}),
        (f"/v1{MODEL}:streamGenerate", {"query": "q"}),
    ],
)
def test_a_native_call_is_a_429_with_retry_after(
    http: httpx.Client, path: str, body: dict[str, object]
) -> None:
    started = time.monotonic()
    response = http.post(path, json=body)
    assert time.monotonic() - started < WELL_BEFORE
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    assert "grpc-retry-pushback-ms" not in response.headers  # gRPC's, for gRPC clients
    assert response.json() == gateway_error(response, 8, MESSAGE)


@pytest.mark.parametrize("stream", [False, True], ids=["Generate", "GenerateStream"])
def test_a_grpc_call_is_resource_exhausted_with_retry_after(stack: Stack, stream: bool) -> None:
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            if stream:
                request = pb.GenerateStreamRequest(model=MODEL, query="q")
                list(stub.GenerateStream(request, timeout=30))
            else:
                stub.Generate(pb.GenerateRequest(model=MODEL, query="q"), timeout=30)
    assert time.monotonic() - started < WELL_BEFORE
    error = failed.value
    assert (error.code(), error.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE)
    # grpc's stubs type a value as bytes; an ASCII header's is a str.
    metadata: dict[str, object] = {m.key: m.value for m in error.trailing_metadata()}
    assert metadata["retry-after"] == "1"
    # gRPC's own, which a service config's retry policy waits for (it reads no retry-after):
    # without it, a policy's backoff spent its attempts within the overload window.
    assert metadata["grpc-retry-pushback-ms"] == "1000"


def test_the_python_client_says_when_to_retry(stack: Stack) -> None:
    with (
        saxgateway_client.Client(stack.grpc_address, timeout=30) as client,
        pytest.raises(saxgateway_client.ResourceExhaustedError) as failed,
    ):
        client.generate(MODEL, "q")
    assert (failed.value.message, failed.value.retry_after) == (MESSAGE, 1.0)


def test_the_node_client_says_when_to_retry(stack: Stack) -> None:
    # The Python client's retry_after had no Node equivalent: a Node caller had to dig the
    # grpc-retry-pushback-ms trailer out of grpc-js's error itself.
    node = shutil.which("node")
    assert node, "node is needed"
    script = ROOT / "tests" / "e2e" / "node" / "retry_after.js"
    out = subprocess.run(
        [node, script, stack.grpc_address, MODEL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    code = "RESOURCE_EXHAUSTED"
    assert [json.loads(line) for line in out.splitlines()] == [
        {"code": code, "retryAfterMs": 1000},
        {"code": code, "retryAfterMs": 1000},
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": MODEL, "prompt": "q"}),
        ("/v1/completions", {"model": MODEL, "prompt": "q", "stream": True}),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "q"}]}),
        ("/v1/responses", {"model": MODEL, "input": "q", "stream": True}),
        ("/v1/embeddings", {"model": MODEL, "input": "q"}),
    ],
)
def test_an_openai_call_is_a_rate_limit_error_with_retry_after(
    http: httpx.Client, path: str, body: dict[str, object]
) -> None:
    started = time.monotonic()
    response = http.post(path, json=body)
    assert time.monotonic() - started < WELL_BEFORE
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    assert json.loads(response.text) == RATE_LIMITED


def test_the_openai_sdk_raises_rate_limit_error_at_once(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.completions.create(model=MODEL, prompt="q")
    assert time.monotonic() - started < WELL_BEFORE
    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.body == RATE_LIMITED["error"]


def test_the_openai_sdks_own_retries_end_in_seconds(stack: Stack) -> None:
    # Its default: two retries, each after the Retry-After second. Three windows and two
    # seconds in all, where the old code took three deadlines (three minutes).
    sent: list[httpx.Request] = []
    hooks = {"request": [sent.append]}
    with openai.OpenAI(
        base_url=stack.http_url + "/v1",
        api_key="x",
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    ) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q"}])
    assert time.monotonic() - started < 2 * WELL_BEFORE
    assert len(sent) == 3
