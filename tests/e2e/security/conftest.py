"""The stack started from a --config file, shared by the tests of this package only: it
starts with the first of them and stops after the last, so it does not load the machine
while the other e2e tests run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import (
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
)
from tests.e2e._published import TEST_LM, published
from tests.e2e.security._credentials import JwtSigner

# The config: API keys, a JWT issuer whose
# key is made here, roles, a model list, Sax ACL groups, quotas and limits.
OPS_KEY = "sk-ops-3f9c2b7e1d6a4f08"
TEAM_A_KEY = "sk-team-a-8b1e5c0d2a7f"
TEAM_B_KEY = "sk-team-b-5d0a9e3c7b21"
BURSTY_KEY = "sk-bursty-1c7e4a9d0b3f"
#: A JWT client with a slow bucket: a call every 10 s.
SLOW_SUBJECT = "auth0|slow)%\"'"
TEMPLATED = "/sax/test/sec-templated"  # a model with a chat template of its own
ISSUER = "https://issuer.saxgw.test"
#: A name the loopback listener answers besides loopback names (a tunnel's, say).
ALLOWED_HOST = "gateway.saxgw.test"
#: An issuer whose tokens may lack `exp` (require_expiration: false).
LASTING_ISSUER = "https://lasting.saxgw.test"
#: The operator's credentials (roles admin and data): HTTP headers, and gRPC metadata.
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
OPS_METADATA = (("authorization", f"Bearer {OPS_KEY}"),)


@dataclass(frozen=True)
class SecureStack:
    """A running stack with a config, and what a test needs to talk to it."""

    stack: Stack
    config_file: Path
    signer: JwtSigner

    def published(
        self, model: str, overrides: Mapping[str, str] | None = None
    ) -> AbstractContextManager[str]:
        """``model``, the test LM with ``overrides``, published by the operator for the block
        (only admins may publish here)."""
        return published(self.stack, model, TEST_LM, overrides, headers=OPS)


def secure_config(jwks: Path) -> dict[str, object]:
    """The config of the secure stack; tests read the same values they assert on."""
    return {
        "auth": {
            "api_keys": [
                {"key": OPS_KEY, "client": "ops", "roles": ["admin", "data"]},
                {"key": TEAM_A_KEY, "client": "team-a", "roles": ["data"]},
                {"key": TEAM_B_KEY, "client": "team-b", "roles": ["data"]},
                {"key": BURSTY_KEY, "client": "bursty", "roles": ["data"]},
            ],
            "jwt": [
                {
                    "issuer": ISSUER,
                    "jwks_file": jwks.name,
                    "audiences": ["saxgw"],
                    "client_claim": "sub",
                    "roles": ["data"],
                    "roles_claim": "roles",
                },
                {
                    "issuer": LASTING_ISSUER,
                    "jwks_file": jwks.name,
                    "audiences": ["saxgw"],
                    "require_expiration": False,
                },
            ],
            "groups": {"readers": ["team-a", "ops"]},
        },
        "clients": {
            "team-b": {"models": ["/sax/test/sec-b-*"]},
            "bursty": {"rate": {"requests_per_second": 1, "burst": 3}},
            # A JWT subject may hold any printable character, a CEL expression's too.
            SLOW_SUBJECT: {"rate": {"requests_per_second": 0.1, "burst": 1}},
        },
        "quotas": {
            "rate": {"requests_per_second": 100, "burst": 200},
            "models": {"/sax/test/sec-slow": {"max_in_flight": 1, "max_queued": 1}},
        },
        # A chat template that says what it was given: run for a caller that may not use
        # its model, it told that caller so (tests/e2e/security/test_openai_access.py).
        "models": {
            TEMPLATED: {
                "chat_template": "{{ raise_exception('templated for ' ~ messages[0].content) }}"
            }
        },
        "cors": {"allowed_origins": ["http://allowed.example"]},
        "allowed_hosts": [ALLOWED_HOST],
        "limits": {"max_request_bytes": 65536, "max_request_headers_kb": 16},
        "admin_only": ["reflection", "addresses", "stats"],
    }


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """The stack started from a --config file, as `saxgw up --config FILE` starts it."""
    base = tmp_path_factory.mktemp("secure")
    logs = logs_dir(base)
    signer = JwtSigner.generate()
    jwks = base / "jwks.json"
    jwks.write_text(signer.jwks())
    config_file = base / "saxgw.yaml"
    config_file.write_text(yaml.safe_dump(secure_config(jwks)))
    config = load_config(config_file).edge
    settings = StackSettings(
        gateway=gateway_settings(base, config_file=str(config_file)),
        cell=cell_settings(base, servers=1, poll_interval=0.3, server_dead_after=2),
        gateway_ports=(free_port(),),
        envoy=envoy_settings(loopback_envoy(), config),
        log_dir=str(logs),
    )
    with healthy_stack(settings, "secure stack") as running:
        yield SecureStack(running, config_file, signer)


@pytest.fixture
def secure_http(secure: SecureStack) -> Iterator[httpx.Client]:
    """An HTTP client of the secure stack's Envoy."""
    with httpx.Client(base_url=secure.stack.http_url, timeout=30) as client:
        yield client
