"""A caller without a credential cannot make Envoy hold a request body (the secure stack).

The buffer filter and the transcoder hold a whole body, up to `limits.max_request_bytes`, and
ran before the credential checks: one HTTP/2 connection without a key opened 48 streams of
31.5 MiB each and Envoy's memory grew from 95 MB to 1.66 GB. Credentials are now checked at
the headers, so the refusal comes before a byte of the body: these requests declare a body and
never send it, and their 401 must arrive all the same (before, Envoy waited for the body).
"""

from __future__ import annotations

import http.client
import json

import pytest

from tests.e2e.security.conftest import OPS, SecureStack

pytestmark = pytest.mark.e2e

#: Under the secure stack's `limits.max_request_bytes` (64 KiB), over the open paths' 8 KiB.
DECLARED = 40_000
#: An empty JSON object of `DECLARED` bytes.
EMPTY = b"{" + b" " * (DECLARED - 2) + b"}"
#: Seconds a refusal at the headers may take on a loaded machine; Envoy waited 300 s before.
PROMPT = 15


def _declare(
    secure: SecureStack, path: str, headers: dict[str, str], body: bytes = b"", method: str = "POST"
) -> tuple[int, bytes]:
    """Sends ``method path`` declaring a `DECLARED`-byte body but sends only ``body``; the
    reply's status and body (a timeout if none comes within `PROMPT` s)."""
    http_url = secure.stack.http_url.removeprefix("http://")
    connection = http.client.HTTPConnection(http_url, timeout=PROMPT)
    try:
        connection.putrequest(method, path)
        for name, value in {**headers, "content-type": "application/json"}.items():
            connection.putheader(name, value)
        connection.putheader("content-length", str(DECLARED))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path", ["/generate", "/generate_stream", "/watch", "/v1/sax/test/x:streamGenerate"]
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer sk-not-a-key-0000000000"}, {"x-api-key": "sk-wrong-000000000"}],
    ids=["no-key", "bad-bearer", "bad-x-api-key"],
)
def test_no_valid_key_is_refused_before_the_body(
    secure: SecureStack, path: str, headers: dict[str, str]
) -> None:
    status, body = _declare(secure, path, headers)
    assert status == 401, body
    reply = json.loads(body)
    assert (reply["code"], reply["message"]) == (16, "Client authentication failed.")


def test_a_bad_jwt_is_refused_before_the_body(secure: SecureStack) -> None:
    token = type(secure.signer).generate().token({"iss": "x", "aud": "saxgw", "sub": "mallory"})
    status, body = _declare(secure, "/generate", {"authorization": f"Bearer {token}"})
    assert status == 401, body
    assert json.loads(body)["message"] == "Jwt issuer is not configured"


def test_the_openai_paths_refuse_before_the_body_in_their_envelope(secure: SecureStack) -> None:
    status, body = _declare(secure, "/v1/chat/completions", {})
    assert status == 401, body
    error = json.loads(body)["error"]
    assert (error["message"], error["code"]) == ("Client authentication failed.", "invalid_api_key")


def test_an_open_path_holds_a_few_kib_of_an_anonymous_body(secure: SecureStack) -> None:
    # GetInfo (`GET /`) is open, so its caller has no identity: Envoy holds 8 KiB of its body,
    # not the stack's 64 KiB, and refuses the rest (before, the whole body reached the
    # transcoder, which passed GetInfo on).
    status, body = _declare(secure, "/", {}, EMPTY, method="GET")
    assert status == 413, body
    assert json.loads(body)["code"] == 8
    # Open paths identify no one (a key there is not looked at); a call that takes a key is
    # held to the stack's limit only.
    status, body = _declare(secure, "/generate", OPS, EMPTY)
    assert status == 400, body
    assert json.loads(body)["code"] == 3  # no model named: the gateway read the body
