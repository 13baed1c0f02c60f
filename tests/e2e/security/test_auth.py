"""Credentials and roles through the real Envoy: API keys, JWTs, roles, open paths, origins."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.configfile import load_config
from tests.e2e._bodies import envoy_error
from tests.e2e._published import TEST_LM
from tests.e2e.security._fronts import front_envoy
from tests.e2e.security.conftest import (
    ISSUER,
    LASTING_ISSUER,
    OPS,
    TEAM_A_KEY,
    SecureStack,
)

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/sec-lm"
TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}
OPENAPI = Path(__file__).resolve().parents[3] / "openapi" / "openapi.json"


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, {"text": "hi there"}) as name:
        yield name


def _generate(
    secure_http: httpx.Client, headers: dict[str, str], model: str = MODEL
) -> httpx.Response:
    return secure_http.post("/generate", json={"model": model, "query": "q"}, headers=headers)


def _error(response: httpx.Response, status: int, code: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    message: str = body["message"]
    return message


def test_no_key_is_401_json(secure_http: httpx.Client, model: str) -> None:
    refused = _generate(secure_http, {})
    _error(refused, 401, 16)
    # RFC 9110 11.6.1: a 401 names the scheme to retry with (none without a credential: RFC
    # 6750 3.1); it had no WWW-Authenticate, where a refused JWT had one.
    realm = f'Bearer realm="http://{secure_http.base_url.netloc.decode()}/generate"'
    assert refused.headers.get("www-authenticate") == realm
    openai = secure_http.get("/v1/models/x?k=v")
    assert openai.status_code == 401, openai.text
    assert openai.headers.get("www-authenticate") == realm.replace("/generate", "/v1/models/x")


def test_bad_key_is_401_json(secure_http: httpx.Client, model: str) -> None:
    netloc = secure_http.base_url.netloc.decode()
    challenge = f'Bearer realm="http://{netloc}/generate", error="invalid_token"'
    for headers in (
        {"Authorization": "Bearer sk-not-a-key-0000000000"},
        {"x-api-key": "sk-not-a-key-0000000000"},
    ):
        refused = _generate(secure_http, headers)
        _error(refused, 401, 16)
        assert refused.headers.get("www-authenticate") == challenge


def test_data_key_generates(secure_http: httpx.Client, model: str) -> None:
    response = _generate(secure_http, TEAM_A)
    assert response.status_code == 200, response.text
    assert response.json() == {"texts": [{"text": "hi there", "score": pytest.approx(-0.2)}]}


def test_the_bearer_scheme_is_case_insensitive(
    secure: SecureStack, secure_http: httpx.Client, model: str
) -> None:
    # RFC 9110 §11.1: `bearer`, `BEARER` and `Bearer` are the same scheme.
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "alice"})
    for scheme in ("bearer", "BEARER", "BeArEr"):
        for credential in (TEAM_A_KEY, token):
            response = _generate(secure_http, {"Authorization": f"{scheme} {credential}"})
            assert response.status_code == 200, (scheme, response.text)
    # A bad credential under any spelling is still refused, and other schemes are no bearer.
    _error(_generate(secure_http, {"Authorization": "bearer sk-not-a-key-0000000000"}), 401, 16)
    _error(_generate(secure_http, {"Authorization": f"Basic {TEAM_A_KEY}"}), 401, 16)
    _error(_generate(secure_http, {"Authorization": f"bearerx {TEAM_A_KEY}"}), 401, 16)


def test_x_api_key_header_works(secure_http: httpx.Client, model: str) -> None:
    assert _generate(secure_http, {"x-api-key": TEAM_A_KEY}).status_code == 200


def test_data_key_cannot_publish(secure_http: httpx.Client) -> None:
    body = {"model": "/sax/test/sec-x", "model_path": TEST_LM, "checkpoint": "None"}
    _error(secure_http.post("/publish", json=body, headers=TEAM_A), 403, 7)
    # Nothing was published.
    listed = secure_http.get("/listcell", params={"model": "/sax/test/sec-x"}, headers=OPS)
    assert listed.status_code == 404, listed.text


def test_admin_key_publishes_and_unpublishes(secure_http: httpx.Client) -> None:
    name = "/sax/test/sec-admin"
    body = {"model": name, "model_path": TEST_LM, "checkpoint": "None", "replicas": 0}
    response = secure_http.post("/publish", json=body, headers=OPS)
    assert response.status_code == 200, response.text
    assert secure_http.post("/unpublish", json={"model": name}, headers=OPS).json() == {
        "model": name
    }


def test_open_paths_need_no_key(secure_http: httpx.Client) -> None:
    assert secure_http.get("/").status_code == 200
    assert secure_http.get("/healthz").status_code == 200
    assert secure_http.get("/openapi.json").json()["openapi"].startswith("3.")
    assert secure_http.get("/docs").status_code == 200
    assert secure_http.get("/docs/").status_code == 301


def test_addresses_and_stats_are_admin_only(secure_http: httpx.Client, model: str) -> None:
    _error(secure_http.get("/listall", params={"sax_cell": "/sax/test"}, headers=TEAM_A), 403, 7)
    _error(secure_http.get("/stats", params={"name": "/sax/test"}, headers=TEAM_A), 403, 7)
    _error(secure_http.get(f"/v1/{model.lstrip('/')}", headers=TEAM_A), 403, 7)
    listed = secure_http.get("/listall", params={"sax_cell": "/sax/test"}, headers=OPS)
    assert listed.status_code == 200, listed.text
    assert MODEL in [m["model"] for m in listed.json()["models"]]


def test_client_cannot_forge_identity(secure_http: httpx.Client, model: str) -> None:
    # The identity header a client sends is removed before authentication.
    _error(_generate(secure_http, {"x-saxgw-client": "ops"}), 401, 16)


def test_jwt_gives_data_role(secure: SecureStack, secure_http: httpx.Client, model: str) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "alice"})
    assert _generate(secure_http, {"Authorization": f"Bearer {token}"}).status_code == 200
    body = {"model": "/sax/test/sec-jwt", "model_path": TEST_LM, "checkpoint": "None"}
    _error(
        secure_http.post("/publish", json=body, headers={"Authorization": f"Bearer {token}"}),
        403,
        7,
    )


def test_jwt_roles_claim_gives_admin(secure: SecureStack, secure_http: httpx.Client) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "bob", "roles": ["admin"]})
    auth = {"Authorization": f"Bearer {token}"}
    name = "/sax/test/sec-jwt-admin"
    body = {"model": name, "model_path": TEST_LM, "checkpoint": "None", "replicas": 0}
    assert secure_http.post("/publish", json=body, headers=auth).status_code == 200
    assert secure_http.post("/unpublish", json={"model": name}, headers=auth).status_code == 200


def test_bad_jwts_are_refused_saying_why(
    secure: SecureStack, secure_http: httpx.Client, model: str
) -> None:
    # This stack also takes API keys: a refused JWT was reported as "Client authentication
    # failed.", api_key_auth's word for a token that is no key, which hid why the JWT was not
    # taken (an expired token read as a wrong one). Now jwt_authn's reason, as on a stack of
    # JWTs alone, and every invalid token is 401 with RFC 6750's `invalid_token` challenge: a
    # genuine token for another audience too (jwt_authn's 403).
    other = type(secure.signer).generate()  # a key the JWKS does not hold
    alice: dict[str, object] = {"iss": ISSUER, "aud": "saxgw", "sub": "alice"}
    tokens = [
        (other.token({**alice, "sub": "mallory"}), 401, 16, "Jwt verification fails"),
        (
            secure.signer.token({**alice, "aud": "other"}),
            401,
            16,
            "Audiences in Jwt are not allowed",
        ),
        (
            secure.signer.token({**alice, "iss": "https://evil.test"}),
            401,
            16,
            "Jwt issuer is not configured",
        ),
        # past the 60 s clock skew
        (secure.signer.token(alice, lifetime=-600), 401, 16, "Jwt is expired"),
        # genuine, but without the claim that names the client ("Client authentication
        # failed." before: api_key_auth's word for it)
        (
            secure.signer.token({"iss": ISSUER, "aud": "saxgw"}),
            401,
            16,
            "Jwt has no sub claim, which names the client",
        ),
    ]
    for token, status, code, why in tokens:
        refused = _generate(secure_http, {"Authorization": f"Bearer {token}"})
        assert refused.status_code == status, refused.text
        assert refused.json() == envoy_error(refused, code, why)
        challenge = 'Bearer realm="http://%s/generate", error="invalid_token"'
        assert (
            refused.headers["www-authenticate"] == challenge % secure_http.base_url.netloc.decode()
        )
        # On the OpenAI paths in OpenAI's envelope, as the SDKs read it. The realm is the
        # URL without its query, which may hold a secret (jwt_authn's own kept it).
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {token}"}
        openai = secure_http.post("/v1/chat/completions?k=secret", json=body, headers=headers)
        assert openai.status_code == 401, openai.text
        error = {"message": why, "type": "authentication_error", "param": None}
        assert openai.json() == {"error": {**error, "code": "invalid_api_key"}}
        realm = challenge.replace("/generate", "/v1/chat/completions")
        assert openai.headers["www-authenticate"] == realm % secure_http.base_url.netloc.decode()


def test_an_envoy_started_again_keeps_the_key_set_read_at_start(
    secure: SecureStack, tmp_path: Path
) -> None:
    """The config, JWKS files too, is read once at start (docs/config.md): an Envoy the
    supervisor starts again (after a crash, or its watchdog) verifies tokens with the key
    set the stack read, whatever the file holds by then. It read the file anew: an edit
    half done at that moment kept Envoy from starting at all (`invalid local jwks`), the
    public port down; a finished one applied in that Envoy alone, ahead of any restart."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(secure.signer.jwks())
    config = tmp_path / "saxgw.yaml"
    config.write_text(f"auth:\n  jwt:\n    - {{issuer: '{ISSUER}', jwks_file: jwks.json}}\n")
    edge = dataclasses.replace(secure.stack.envoy.edge, jwt=load_config(config).edge.jwt)
    jwks.write_text('{"keys": [')  # an editor's first write
    token = secure.signer.token({"iss": ISSUER, "sub": "alice"})
    with (
        front_envoy(secure, edge, tmp_path, "envoy-jwks") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        listed = http.get("/listcells", headers={"Authorization": f"Bearer {token}"})
        assert (listed.status_code, listed.json()) == (200, {"cells": ["/sax/test"]})


def test_a_jwt_without_expiry_is_refused_unless_its_issuer_allows(
    secure: SecureStack, secure_http: httpx.Client, model: str
) -> None:
    lasting = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "alice"}, lifetime=None)
    refused = _generate(secure_http, {"Authorization": f"Bearer {lasting}"})
    assert refused.status_code == 401, refused.text
    # jwt_authn's word for it (its reply does not name the missing claim).
    assert refused.json() == envoy_error(refused, 16, "Jwt verification fails")
    # An issuer with `require_expiration: false` (conftest.py) may leave `exp` out.
    allowed = secure.signer.token({"iss": LASTING_ISSUER, "aud": "saxgw", "sub": "dave"}, None)
    response = _generate(secure_http, {"Authorization": f"Bearer {allowed}"})
    assert response.status_code == 200, response.text


def test_foreign_origin_changes_nothing(secure_http: httpx.Client) -> None:
    name = "/sax/test/sec-csrf"
    form = f"model={name}&model_path={TEST_LM}&checkpoint=None"
    evil = {"Origin": "https://evil.example", **OPS}
    text = {"Content-Type": "text/plain", **evil}
    _error(secure_http.post("/publish", content=form, headers=evil), 403, 7)
    _error(secure_http.post("/unpublish", content=f'{{"model":"{name}"}}', headers=text), 403, 7)
    assert secure_http.get("/listcell", params={"model": name}, headers=OPS).status_code == 404


def test_allowed_origin_passes(secure_http: httpx.Client, model: str) -> None:
    response = _generate(secure_http, {"Origin": "http://allowed.example", **TEAM_A})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "http://allowed.example"


def test_a_page_on_an_allowed_origin_may_read_every_documented_response_header(
    secure_http: httpx.Client, model: str
) -> None:
    # docs/api.md promises the rate-limit headers on the replies a rate counted; a
    # browser shows a page only the headers CORS exposes, which left them out.
    documented = set(json.loads(OPENAPI.read_text())["components"]["headers"])
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= documented
    response = _generate(secure_http, {"Origin": "http://allowed.example", **TEAM_A})
    assert response.status_code == 200, response.text
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert documented <= exposed, documented - exposed
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert response.headers[name].isdigit(), (name, response.headers)


def test_a_page_on_an_allowed_origin_may_send_an_api_key_header(
    secure_http: httpx.Client, model: str
) -> None:
    # The browser asks first (a CORS preflight) whether the page may send x-api-key.
    preflight = secure_http.options(
        "/generate",
        headers={
            "Origin": "http://allowed.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "http://allowed.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-api-key"} <= allowed
    response = _generate(secure_http, {"Origin": "http://allowed.example", "x-api-key": TEAM_A_KEY})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "http://allowed.example"


def test_body_limit_is_413_json(secure_http: httpx.Client, model: str) -> None:
    # max_request_bytes: 65536 in this config.
    big = {"model": MODEL, "query": "x" * 70_000}
    response = secure_http.post("/generate", json=big, headers=TEAM_A)
    assert response.status_code == 413, response.text
    # Envoy's buffer filter, before any gateway reads the body (envoy/envoy.yaml.tmpl).
    assert response.json() == envoy_error(response, 8, "Payload Too Large")


def test_header_limit_is_431_json(secure_http: httpx.Client) -> None:
    # max_request_headers_kb: 16 in this config.
    response = secure_http.get("/", headers={"x-padding": "p" * 20_000})
    assert response.status_code == 431, response.text
    assert response.json() == envoy_error(response, 8, "Request Header Fields Too Large")
