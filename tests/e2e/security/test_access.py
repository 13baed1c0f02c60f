"""What the gateway enforces behind Envoy (Sax model ACLs, model lists, per-model limits) and
Envoy's per-client rate, through the real Envoy."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.client import Client, ClientSettings
from tests.e2e._bodies import envoy_error, gateway_error
from tests.e2e.security.conftest import (
    BURSTY_KEY,
    ISSUER,
    OPS,
    TEAM_A_KEY,
    TEAM_B_KEY,
    SecureStack,
)

pytestmark = pytest.mark.e2e

TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}
TEAM_B = {"Authorization": f"Bearer {TEAM_B_KEY}"}
BURSTY = {"Authorization": f"Bearer {BURSTY_KEY}"}


def _generate(secure_http: httpx.Client, model: str, headers: dict[str, str]) -> httpx.Response:
    return secure_http.post("/generate", json={"model": model, "query": "q"}, headers=headers)


def _set_method_acl(secure: SecureStack, model: str, method: str, acl: str) -> None:
    """Sets a data method's ACL on the cell directly, as `saxutil setacl` does."""

    async def run() -> None:
        client = Client(ClientSettings(sax_root=secure.stack.settings.sax_root))
        try:
            await client.set_acl(model, acl, method=method, timeout=10)
        finally:
            await client.close()

    asyncio.run(run())


def _until(predicate: Callable[[], bool], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0.2)


def test_sax_acl_set_on_the_cell_protects_the_model(
    secure: SecureStack, secure_http: httpx.Client
) -> None:
    model = "/sax/test/sec-acl"
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "carol"})
    carol = {"Authorization": f"Bearer {token}"}
    with secure.published(model, {"text": "ok"}):
        assert _generate(secure_http, model, carol).status_code == 200
        _set_method_acl(secure, model, "lm.generate", "acl/readers")
        # The group `readers` holds team-a and ops (config); carol is not in it.
        _until(lambda: _generate(secure_http, model, carol).status_code == 403)
        refused = _generate(secure_http, model, carol)
        assert refused.json() == gateway_error(
            refused,
            7,
            f"lm.generate on {model} is limited to acl/readers; client carol is not in it",
        )
        assert _generate(secure_http, model, TEAM_A).status_code == 200
        assert _generate(secure_http, model, OPS).status_code == 200
        # The resource path binds the ID without its leading slash: the same model, same ACL.
        bare = secure_http.post(f"/v1{model}:generate", json={"query": "q"}, headers=carol)
        assert bare.json() == refused.json() | {"details": bare.json()["details"]}
        assert bare.status_code == 403
        # Other methods have no ACL.
        score = secure_http.post("/score", json={"model": model, "suffix": ["x"]}, headers=carol)
        assert score.status_code == 200, score.text
        _set_method_acl(secure, model, "lm.generate", "")
        _until(lambda: _generate(secure_http, model, carol).status_code == 200)


def test_client_limited_to_some_models(secure: SecureStack, secure_http: httpx.Client) -> None:
    allowed = "/sax/test/sec-b-lm"
    with secure.published(allowed, {"text": "ok"}):
        assert _generate(secure_http, allowed, TEAM_B).status_code == 200
        own = secure_http.post(f"/v1{allowed}:generate", json={"query": "q"}, headers=TEAM_B)
        assert own.status_code == 200, own.text
        response = _generate(secure_http, "/sax/test/sec-other", TEAM_B)
        assert response.status_code == 403
        assert response.json() == gateway_error(
            response, 7, "client team-b may not use /sax/test/sec-other"
        )
        # The gateway's log line of the refusal names the call as the response does.
        request_id = response.headers["x-request-id"]
        [line] = _gateway_log_lines(secure, request_id)
        refusal = "client=team-b refused model=/sax/test/sec-other: not in its model list"
        assert line["message"] == refusal
        assert (line["level"], line["client"]) == ("INFO", "team-b")


def _gateway_log_lines(secure: SecureStack, request_id: str) -> list[dict[str, object]]:
    """The JSON lines the gateway processes logged with ``request_id``."""
    logs = Path(secure.stack.settings.log_dir or "")
    lines = []
    for log in sorted(logs.glob("gateway-*.log")):
        for text in log.read_text().splitlines():
            if text.startswith("{") and request_id in text:
                line = json.loads(text)
                assert line["request_id"] == request_id
                lines.append(line)
    return lines


def test_rate_limit_then_refill(secure_http: httpx.Client) -> None:
    # bursty: 3 requests at once, then 1 per second. GetInfo needs no key, so use a data call
    # that fails fast after the quota check (an unknown model is NOT_FOUND).
    def call() -> httpx.Response:
        return _generate(secure_http, "/sax/test/sec-none", BURSTY)

    statuses = []
    limited = None
    for _ in range(6):
        response = call()
        statuses.append(response.status_code)
        if response.status_code == 429:
            limited = response
            break
    assert limited is not None, statuses
    assert limited.json() == envoy_error(limited, 8, "local_rate_limited")
    assert limited.headers["retry-after"] == "1"
    assert "grpc-retry-pushback-ms" not in limited.headers  # gRPC's, for gRPC clients
    assert limited.headers["x-ratelimit-limit"] == "3"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    # The bucket refills: within a few seconds the same client gets through again.
    _until(lambda: call().status_code == 404)
    # Other clients have their own buckets all along.
    assert _generate(secure_http, "/sax/test/sec-none", TEAM_A).status_code == 404


def test_model_limit_sheds_with_429(secure: SecureStack, secure_http: httpx.Client) -> None:
    # /sax/test/sec-slow: one call in flight, one queued (config); the third is refused.
    model = "/sax/test/sec-slow"
    overrides = {"text": "a b c", "delay_ms": "300"}
    with secure.published(model, overrides):

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=secure.stack.http_url, timeout=60) as client:
                calls = [
                    client.post("/generate", json={"model": model, "query": "q"}, headers=OPS)
                    for _ in range(6)
                ]
                return list(await asyncio.gather(*calls))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) >= 2, statuses
        assert 429 in statuses, statuses
        shed = next(r for r in responses if r.status_code == 429)
        assert shed.headers["retry-after"] == "1"
        assert shed.json()["code"] == 8
        assert "at its limit of calls in flight and queued" in shed.json()["message"]


RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def test_the_rate_headers_are_on_the_replies_the_bucket_counted(
    secure_http: httpx.Client,
) -> None:
    # docs/api.md said "on every reply while a rate applies", but Envoy refuses a credential
    # (401) or a role (403) at the request's headers, before the bucket: those take no token
    # and carry none (for a 401, the caller may have no bucket at all). The docs now say so,
    # rather than count refused calls against a quota they never reached.
    counted = _generate(secure_http, "/sax/test/sec-none", TEAM_A)
    assert counted.status_code == 404, counted.text
    assert all(counted.headers[h].isdigit() for h in RATE_HEADERS), counted.headers
    unknown_key = _generate(secure_http, "/sax/test/sec-none", {"Authorization": "Bearer sk-x"})
    assert unknown_key.status_code == 401, unknown_key.text
    no_role = secure_http.post("/unpublish", json={"model": "/sax/test/sec-none"}, headers=TEAM_A)
    assert no_role.status_code == 403, no_role.text
    for refused in (unknown_key, no_role):
        assert not [h for h in RATE_HEADERS if h in refused.headers], refused.headers
