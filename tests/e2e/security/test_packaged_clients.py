"""The packaged clients (clients/python, clients/node) against a stack that asks for
credentials: an API key in their metadata, and Envoy's own refusals as their exceptions."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.rpc import error_details_pb2
from saxgateway_client import Client, UnauthenticatedError

from tests._approx import approx
from tests.e2e.security.conftest import OPS_KEY, OPS_METADATA, SecureStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
MODEL = "/sax/test/sec-packaged"
REQUEST_ID = "5b7e0f0e-2f8d-4d0c-8f61-3c1f0a9e7d21"


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, {"text": "key ok"}) as name:
        yield name


def test_python_client_sends_its_api_key_in_metadata(secure: SecureStack, model: str) -> None:
    with Client(secure.stack.grpc_address, timeout=20, metadata=OPS_METADATA) as client:
        assert client.generate(model, "q") == [("key ok", approx(-0.2))]


def test_python_client_reads_envoys_refusal(secure: SecureStack, model: str) -> None:
    # Envoy's refusal reaches gRPC callers with the HTTP API's JSON error body as the status
    # message; the exception carried that JSON whole as its message (saxgw showed the inner
    # one), and not the RequestInfo the body names.
    metadata = [("x-request-id", REQUEST_ID)]
    with (
        Client(secure.stack.grpc_address, timeout=20, metadata=metadata) as client,
        pytest.raises(UnauthenticatedError) as raised,
    ):
        client.generate(model, "q")
    assert raised.value.message == "Client authentication failed."
    [detail] = raised.value.details
    info = error_details_pb2.RequestInfo()
    assert detail.Unpack(info) and info.request_id == REQUEST_ID


def test_node_client_reads_envoys_refusal_and_sends_its_api_key(
    secure: SecureStack, model: str
) -> None:
    node = shutil.which("node")
    assert node, "node is needed"
    script = ROOT / "tests" / "e2e" / "node" / "refused.js"
    result = subprocess.run(
        [node, script, secure.stack.grpc_address, model, OPS_KEY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Envoy's message, as the status message arrived (it was the HTTP API's JSON body), and
    # the request ID from the RequestInfo of grpc-status-details-bin.
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {
            "code": "UNAUTHENTICATED",
            "message": "UNAUTHENTICATED: Client authentication failed.",
            "requestId": "node-refused-17",
            "rawMessage": "Client authentication failed.",
            "details": ["type.googleapis.com/google.rpc.RequestInfo"],
        },
        {"texts": ["key ok"]},
    ]
