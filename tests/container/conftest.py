"""The compose stack for the container tests, up once per session and torn down after.

Run by `make container-test` (scripts/container-test), which starts the engine and builds the
images first; `make test` does not collect this folder (tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.container._compose import Compose, Ports, poll


@pytest.fixture(scope="session")
def compose() -> Iterator[Compose]:
    env = dict(os.environ)
    assert "DOCKER_HOST" in env, "run through `make container-test` (scripts/container-test)"
    ports = Ports(
        **{
            field: int(env[f"SAXGW_CT_{field.upper()}_PORT"])
            for field in ("http", "envoy_admin", "gateway", "admin", "model")
            if f"SAXGW_CT_{field.upper()}_PORT" in env
        }
    )
    stack = Compose(project=env.get("SAXGW_CT_PROJECT", "saxgwct"), ports=ports, env=env)
    stack.run("down", "--volumes", "--remove-orphans")  # whatever a crashed run left
    stack.run("up", "--detach", "--no-build")
    try:
        poll(
            lambda: httpx.get(f"{stack.http_url}/healthz").status_code == 200 or None,
            "Envoy's /healthz to report the gateway healthy",
        )
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.run("down", "--volumes", "--remove-orphans")


@pytest.fixture
def http(compose: Compose) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=compose.http_url, timeout=30) as client:
        yield client
