"""Configs whose only credentials are JWTs: one issuer and no API keys, with and without
client certificates.

Each is an Envoy of its own, rendered from such a config, in front of the secure stack's
gateways. With one issuer and no keys, the rendered `requires_any` once had a single entry,
which Envoy refuses: `saxgw up` with such a config never started.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.configfile import parse_config
from tests.e2e._bodies import envoy_error, gateway_error
from tests.e2e.security._credentials import CertificateAuthority, JwtSigner
from tests.e2e.security._fronts import front_envoy
from tests.e2e.security.conftest import ISSUER, LASTING_ISSUER, SecureStack

pytestmark = pytest.mark.e2e

JWT = {"issuer": ISSUER, "jwks_file": "jwks.json", "audiences": ["saxgw"]}


@contextmanager
def _front(secure: SecureStack, base: Path, config: dict[str, object], name: str) -> Iterator[int]:
    """An Envoy rendered from ``config`` (its files in ``base``) before the secure stack."""
    (base / "jwks.json").write_text(secure.signer.jwks())
    edge = parse_config(config, base).edge
    with front_envoy(secure, edge, base, name) as port:
        yield port


@pytest.fixture(scope="module")
def jwt_front(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("jwt-only")
    with _front(secure, base, {"auth": {"jwt": [JWT]}}, "envoy-jwt-only") as port:
        yield f"http://127.0.0.1:{port}"


def _error(response: httpx.Response, status: int, code: int) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


def test_one_issuer_without_api_keys_authenticates(secure: SecureStack, jwt_front: str) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "alice"})
    with httpx.Client(base_url=jwt_front, timeout=30) as http:
        listed = http.get("/listcells", headers={"Authorization": f"Bearer {token}"})
        assert (listed.status_code, listed.json()) == (200, {"cells": ["/sax/test"]})
        _error(http.get("/listcells"), 401, 16)
        forged = JwtSigner.generate().token({"iss": ISSUER, "aud": "saxgw", "sub": "mallory"})
        _error(http.get("/listcells", headers={"Authorization": f"Bearer {forged}"}), 401, 16)
        # The issuer gives the data role only.
        publish = {"model": "/sax/test/jwt-only", "model_path": "x", "checkpoint": "None"}
        headers = {"Authorization": f"Bearer {token}"}
        _error(http.post("/publish", json=publish, headers=headers), 403, 7)
        assert http.get("/").status_code == 200  # open paths stay open


def test_a_listed_certificate_needs_no_token_beside_issuers(
    secure: SecureStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("jwt-certs")
    ca = CertificateAuthority.generate()
    (base / "ca.pem").write_bytes(ca.pem())
    for name, common_name, server in (("server", "saxgw server", True), ("batch", "batch", False)):
        cert, key = ca.issue(common_name, server=server)
        (base / f"{name}.pem").write_bytes(cert)
        (base / f"{name}.key").write_bytes(key)
    tls = {
        "cert_file": "server.pem",
        "key_file": "server.key",
        "client_ca_file": "ca.pem",
        "certificate_clients": [{"subject": "CN=batch", "client": "batch", "roles": ["data"]}],
    }
    context = ssl.create_default_context(cafile=str(base / "ca.pem"))
    context.load_cert_chain(str(base / "batch.pem"), str(base / "batch.key"))
    # Two issuers, so that the config rendered Envoy would start even before the fix.
    config = {"auth": {"jwt": [JWT, {**JWT, "issuer": LASTING_ISSUER}]}, "tls": tls}
    with (
        _front(secure, base, config, "envoy-jwt-certs") as port,
        httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30) as http,
    ):
        listed = http.get("/listcells")  # no token: the certificate says batch
        assert (listed.status_code, listed.json()) == (200, {"cells": ["/sax/test"]})
        forged = JwtSigner.generate().token({"iss": ISSUER, "aud": "saxgw", "sub": "x"})
        refused = http.get("/listcells", headers={"Authorization": f"Bearer {forged}"})
        _error(refused, 401, 16)  # a token that is there must still be valid


def test_a_jwt_without_its_client_claim_is_refused_naming_it(
    secure: SecureStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Before, RBAC admitted such a token by its issuer and the gateway served it with no
    # client id, as an anonymous caller: 200 here.
    base = tmp_path_factory.mktemp("jwt-claim")
    config: dict[str, object] = {"auth": {"jwt": [{**JWT, "client_claim": "email"}]}}
    claims: dict[str, object] = {"iss": ISSUER, "aud": "saxgw", "sub": "alice"}
    with (
        _front(secure, base, config, "envoy-jwt-claim") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        unnamed = secure.signer.token(claims)
        refused = http.get("/listcells", headers={"Authorization": f"Bearer {unnamed}"})
        assert refused.status_code == 401, refused.text
        assert refused.json() == envoy_error(
            refused, 16, "Jwt has no email claim, which names the client"
        )
        challenge = f'Bearer realm="http://127.0.0.1:{port}/listcells", error="invalid_token"'
        assert refused.headers["www-authenticate"] == challenge
        # A claim with a control character, which jwt_authn copies as it is: a 503 at the
        # gateway ("invalid header value"), which clients retry.
        # Beside a key too, which skipped the check: a 403 "RBAC: access denied".
        for value, key in (("bo\x02b", {}), ("x\x7f", {"x-api-key": "sk-any-0123456789abcd"})):
            broken = secure.signer.token({**claims, "email": value})
            headers = {"Authorization": f"Bearer {broken}", **key}
            refused = http.get("/listcells", headers=headers)
            assert refused.json() == envoy_error(
                refused,
                16,
                "Jwt's email claim cannot name the client: it holds a control character",
            )
            assert refused.status_code == 401
        named = secure.signer.token({**claims, "email": "alice@saxgw.test"})
        listed = http.get("/listcells", headers={"Authorization": f"Bearer {named}"})
        assert (listed.status_code, listed.json()) == (200, {"cells": ["/sax/test"]})
        assert http.get("/").status_code == 200  # an open path verifies no token


def test_a_claim_name_with_dots_is_a_path_else_one_claim_for_client_and_roles_alike(
    secure: SecureStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Envoy read the client claim as a path of nested objects only, and the roles claim as
    # one claim only: Auth0's namespaced client claim was "missing" (401), Keycloak's nested
    # realm_access.roles never found (403).
    base = tmp_path_factory.mktemp("jwt-dots")
    issuer = {**JWT, "client_claim": "https://saxgw.test/client", "roles": []}
    config: dict[str, object] = {"auth": {"jwt": [{**issuer, "roles_claim": "realm_access.roles"}]}}
    claims: dict[str, object] = {"iss": ISSUER, "aud": "saxgw", "sub": "alice"}
    namespaced: dict[str, object] = {"https://saxgw.test/client": "team-b"}  # Auth0's shape
    nested: dict[str, object] = {"https://saxgw": {"test/client": "team-b"}}
    keycloak: dict[str, object] = {"realm_access": {"roles": ["data"]}}
    flat: dict[str, object] = {"realm_access.roles": ["data"]}
    with (
        _front(secure, base, config, "envoy-jwt-dots") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        for client, roles in [(namespaced, keycloak), (nested, flat), (namespaced, flat)]:
            token = secure.signer.token({**claims, **client, **roles})
            headers = {"Authorization": f"Bearer {token}"}
            listed = http.get("/listcells", headers=headers)
            assert (listed.status_code, listed.json()) == (200, {"cells": ["/sax/test"]})
            # The client is team-b, whom the gateways' config limits to /sax/test/sec-b-*.
            body = {"model": "/sax/test/not-b", "query": "x"}
            refused = http.post("/generate", json=body, headers=headers)
            assert refused.json() == gateway_error(
                refused, 7, "client team-b may not use /sax/test/not-b"
            )
        # A whole-name claim with a control character is named as such, not "missing".
        broken = secure.signer.token({**claims, **keycloak, "https://saxgw.test/client": "b\x01"})
        refused = http.get("/listcells", headers={"Authorization": f"Bearer {broken}"})
        assert (refused.status_code, refused.json()["message"]) == (
            401,
            "Jwt's https://saxgw.test/client claim cannot name the client: it holds a control "
            "character",
        )
        no_roles = secure.signer.token({**claims, **namespaced})
        refused = http.get("/listcells", headers={"Authorization": f"Bearer {no_roles}"})
        assert refused.status_code == 403, refused.text


def test_a_token_naming_a_key_clients_id_is_refused(
    secure: SecureStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The gateway reads a caller's ACLs, model list and limits by its id alone: a token whose
    # client claim a user chooses (Keycloak's preferred_username) passed as the key client
    # `ops` (200 through an ACL naming ops alone).
    base = tmp_path_factory.mktemp("jwt-named")
    secret = "sk-front-ops-0123456789"
    key = {"key": secret, "client": "ops", "roles": ["data"]}
    config: dict[str, object] = {"auth": {"jwt": [JWT], "api_keys": [key]}}
    claims: dict[str, object] = {"iss": ISSUER, "aud": "saxgw"}
    with (
        _front(secure, base, config, "envoy-jwt-named") as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        for sub, status in (("ops", 403), ("alice", 200)):
            token = secure.signer.token({**claims, "sub": sub})
            listed = http.get("/listcells", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == status, (sub, listed.text)
        by_key = http.get("/listcells", headers={"x-api-key": secret})
        assert by_key.status_code == 200, by_key.text
