"""Envoy's access log (docs/operations.md) as the secure stack writes it: what a client sends
in a query string never reaches it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e._access_log import access_log_line
from tests.e2e.security.conftest import TEAM_A_KEY, SecureStack

pytestmark = pytest.mark.e2e

SECRET = "sk-in-the-query-7e1f0c9a2b"


def test_the_access_log_keeps_no_query_string(secure: SecureStack) -> None:
    log = Path(secure.stack.settings.log_dir or "") / "envoy.log"
    # An open path Envoy answers itself, and a call the transcoder turns into a gRPC method
    # (a query parameter it knows, so that it transcodes; the model does not exist).
    calls = {
        "/openapi.json": ("/openapi.json", "/openapi.json"),
        "/generate": ("/generate", "/saxgateway.v1.SaxGateway/Generate"),
    }
    ids = {path: str(uuid.uuid4()) for path in calls}
    with httpx.Client(base_url=secure.stack.http_url, timeout=30) as http:
        for path, request_id in ids.items():
            headers = {"x-request-id": request_id, "x-api-key": TEAM_A_KEY}
            body = {"model": "/sax/test/no-such-model"}
            http.post(path, params={"query": SECRET}, json=body, headers=headers)
    for path, (logged_path, grpc_method) in calls.items():
        line = access_log_line(secure.stack, ids[path])
        assert (line["path"], line["grpc_method"]) == (logged_path, grpc_method)
    assert SECRET not in log.read_text()
