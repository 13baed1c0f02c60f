"""Without a config (the seed's setup): cross-site writes are refused, curl keeps working."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import pytest

from gateway.client import Client, ClientSettings
from gateway.launch.stack import Stack
from tests.e2e._bodies import REQUEST_INFO
from tests.e2e._published import TEST_LM

pytestmark = pytest.mark.e2e


def _curl(stack: Stack, *args: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_simple_cross_site_requests_change_nothing(stack: Stack, http: httpx.Client) -> None:
    name = "/sax/test/csrf-target"
    body = {"model": name, "model_path": TEST_LM, "checkpoint": "None", "replicas": 0}
    assert http.post("/publish", json=body).status_code == 200
    try:
        # The example: a text/plain "simple request" needs no CORS preflight.
        status, text = _curl(
            stack,
            "-H", "Content-Type: text/plain",
            "-H", "Origin: https://evil.example",
            "-X", "POST", f"{stack.http_url}/unpublish",
            "-d", f'{{"model":"{name}"}}',
        )  # fmt: skip
        refused = json.loads(text)
        request_id = refused.get("request_id")
        assert (status, refused) == (
            403,
            {
                "code": 7,
                "message": "cross-origin request refused: Origin is not allowed",
                "details": [{"@type": REQUEST_INFO, "request_id": request_id}],
                "request_id": request_id,
            },
        )
        assert request_id
        # A form post, as an HTML <form> sends it.
        status, _ = _curl(
            stack,
            "-H", "Origin: https://evil.example",
            "--data-urlencode", "model=/sax/test/csrf-other",
            f"{stack.http_url}/publish",
        )  # fmt: skip
        assert status == 403
        assert http.get("/listcell", params={"model": name}).status_code == 200
        assert http.get("/listcell", params={"model": "/sax/test/csrf-other"}).status_code == 404
    finally:
        # Without Origin (curl, SDKs) writes work as before.
        status, text = _curl(
            stack, "-X", "POST", f"{stack.http_url}/unpublish", "-d", f'{{"model":"{name}"}}'
        )
        assert (status, text) == (200, f'{{"model":"{name}"}}')


def test_anonymous_callers_pass_no_model_acl(stack: Stack, http: httpx.Client) -> None:
    # Without authentication nobody has an identity, so a model ACL admits nobody through the
    # gateway; a client cannot claim one either.
    name = "/sax/test/acl-anon"
    body = {"model": name, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
    assert http.post("/publish", json=body).status_code == 200
    try:
        assert http.post("/wait_for_ready", json={"model": name}).status_code == 200

        async def set_acl() -> None:
            client = Client(ClientSettings(sax_root=stack.settings.sax_root))
            try:
                await client.set_acl(name, "acl/team-a", method="lm.generate", timeout=10)
            finally:
                await client.close()

        asyncio.run(set_acl())
        response = http.post(
            "/generate", json={"model": name, "query": "q"}, headers={"x-saxgw-client": "team-a"}
        )
        assert response.status_code == 403, response.text
        assert response.json()["message"] == (
            f"lm.generate on {name} is limited to acl/team-a; client anonymous is not in it"
        )
    finally:
        http.post("/unpublish", json={"model": name})
