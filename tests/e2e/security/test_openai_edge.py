"""Envoy's own replies on the OpenAI paths (no key, a bad key, a foreign Origin, a client's rate,
a body over the limit, a route the API lacks) are OpenAI's error envelope, so the real SDKs
raise the class the status means with the message, type and code, and the request ID."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e._openai import node_sdk
from tests.e2e.security.conftest import (
    BURSTY_KEY,
    ISSUER,
    SLOW_SUBJECT,
    TEAM_A_KEY,
    SecureStack,
)

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/sec-oai"


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, {"text": "hi there"}) as name:
        yield name


def _sdk(secure: SecureStack, key: str, **options: object) -> openai.OpenAI:
    # No retries: a test that expects an error wants it at once.
    url = secure.stack.http_url + "/v1"
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, **options)  # type: ignore[arg-type]


def _envelope(message: str, kind: str, code: str | None) -> dict[str, object]:
    """What the SDK keeps of the envelope (``exc.body``): the ``error`` object."""
    return {"message": message, "type": kind, "param": None, "code": code}


def test_a_key_passes_and_a_bad_one_is_an_authentication_error(
    secure: SecureStack, model: str
) -> None:
    with _sdk(secure, TEAM_A_KEY) as client:
        done = client.completions.create(model=model, prompt="q", max_tokens=8)
        assert done.choices[0].text == "hi there"
    refused = _envelope("Client authentication failed.", "authentication_error", "invalid_api_key")
    with (
        _sdk(secure, "sk-not-a-key-0000000000") as client,
        pytest.raises(openai.AuthenticationError) as failure,
    ):
        client.completions.create(model=model, prompt="q")
    error = failure.value
    assert error.status_code == 401 and error.body == refused
    assert error.message == "Error code: 401 - Client authentication failed."
    assert error.request_id == error.response.headers["x-request-id"] != ""
    # No key at all (the SDK insists on one, so plain HTTP): the same envelope.
    body = {"model": model, "prompt": "q"}
    response = httpx.post(secure.stack.http_url + "/v1/completions", json=body, timeout=30)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": refused}


def test_the_clients_request_id_is_kept(secure: SecureStack) -> None:
    with (
        _sdk(secure, "sk-wrong", default_headers={"x-request-id": "oai-req-16"}) as client,
        pytest.raises(openai.AuthenticationError) as failure,
    ):
        client.models.list()
    assert failure.value.request_id == "oai-req-16"


def test_a_foreign_origin_is_a_permission_error(secure: SecureStack) -> None:
    evil = {"Origin": "https://evil.example"}
    with (
        _sdk(secure, TEAM_A_KEY, default_headers=evil) as client,
        pytest.raises(openai.PermissionDeniedError) as failure,
    ):
        client.models.list()
    assert failure.value.body == _envelope(
        "cross-origin request refused: Origin is not allowed", "permission_error", None
    )


def test_a_clients_rate_is_a_rate_limit_error_with_retry_after(secure: SecureStack) -> None:
    # bursty: 3 requests at once, then 1 per second (conftest); its bucket is its own.
    with _sdk(secure, BURSTY_KEY) as client:
        limited = None
        for _ in range(12):
            try:
                client.models.list()
            except openai.RateLimitError as exc:
                limited = exc
                break
    assert limited is not None, "never rate limited"
    limit = _envelope("local_rate_limited", "rate_limit_error", "rate_limit_exceeded")
    assert limited.body == limit
    # Its own bucket's wait, not the slowest client's (SLOW_SUBJECT's 10 s: the SDK would
    # wait that long before each retry).
    assert limited.response.headers["retry-after"] == "1"
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": SLOW_SUBJECT})
    with _sdk(secure, token) as slow:
        slow.models.list()  # its burst: one call
        with pytest.raises(openai.RateLimitError) as refused:
            slow.models.list()
    assert refused.value.body == limit
    assert refused.value.response.headers["retry-after"] == "10"


def test_a_body_over_the_limit_is_a_413_envelope(secure: SecureStack, model: str) -> None:
    # max_request_bytes: 65536 in this config; Envoy refuses the body before any key check.
    with _sdk(secure, TEAM_A_KEY) as client, pytest.raises(openai.APIStatusError) as failure:
        client.completions.create(model=model, prompt="x" * 70_000)
    assert failure.value.status_code == 413
    assert failure.value.body == _envelope("Payload Too Large", "invalid_request_error", None)


def test_a_route_the_api_lacks_is_not_found(secure: SecureStack) -> None:
    with _sdk(secure, TEAM_A_KEY) as client, pytest.raises(openai.NotFoundError) as failure:
        client.images.generate(model=MODEL, prompt="q")
    assert failure.value.body == _envelope(
        "Could not resolve /v1/images/generations to a method.", "invalid_request_error", None
    )


def test_native_v1_routes_keep_the_status_json(secure: SecureStack) -> None:
    # /v1/sax/... and /v1/cells are the gateway's own resource routes, not OpenAI's.
    with httpx.Client(base_url=secure.stack.http_url, timeout=30) as http:
        for path in (f"/v1{MODEL}", "/v1/cells"):
            body = http.get(path).json()
            assert body["code"] == 16 and "error" not in body, (path, body)


def test_node_sdk_raises_authentication_error(secure: SecureStack) -> None:
    script = (
        'import OpenAI from "openai";'
        "const client = new OpenAI({baseURL: process.argv[1], apiKey: 'sk-wrong-0000',"
        " maxRetries: 0});"
        "try { await client.models.list(); console.log('no error'); } catch (e) {"
        " console.log(JSON.stringify({name: e.constructor.name, status: e.status,"
        " type: e.type, code: e.code, message: e.message, requestID: e.requestID})); }"
    )
    error = node_sdk(script, secure.stack.http_url + "/v1")
    assert error.pop("requestID")
    assert error == {
        "name": "AuthenticationError",
        "status": 401,
        "type": "authentication_error",
        "code": "invalid_api_key",
        "message": "401 Client authentication failed.",
    }
