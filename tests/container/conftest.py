"""The compose stack for the container tests, up once per session and torn down after.

Run by `make container-test` (scripts/container-test), which starts the engine and builds the
images first; `make test` does not collect this folder (tests/conftest.py). The stack requires
an API key (API_KEY), so every test shows the deployment path authenticated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container._compose import Compose, Ports, poll
from tests.container._pod import remove_pods

# The stack runs with a config file that requires an API key (docs/config.md), laid out as the
# Kubernetes manifests mount it: config.yaml naming a keys file that a Secret would hold.
API_KEY = "sk-ct-admin-5e2f8a1c9d7b"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _config_dir(folder: Path) -> Path:
    """SAXGW_CONFIG_DIR for docker-compose.yml: mounted read-only at /etc/saxgw."""
    (folder / "config.yaml").write_text("auth:\n  api_keys_file: keys.yaml\n")
    (folder / "keys.yaml").write_text(
        f"- {{key: {API_KEY}, client: container-test, roles: [admin, data]}}\n"
    )
    # As docs/deploy.md has the operator do: readable by the containers' group (GID 10001),
    # not by every user of the host (the keys are in it).
    for path, mode in (
        (folder, 0o750),
        (folder / "config.yaml", 0o640),
        (folder / "keys.yaml", 0o640),
    ):
        os.chown(path, -1, 10001)
        path.chmod(mode)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _no_pod_left() -> None:
    """Removes whatever pods, and stand-ins beside them, a crashed run left
    (tests/container/_pod.py, _outside.py), before anything starts."""
    remove_pods()


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    env = dict(os.environ)
    assert "DOCKER_HOST" in env, "run through `make container-test` (scripts/container-test)"
    env["SAXGW_CONFIG_DIR"] = str(_config_dir(tmp_path_factory.mktemp("saxgw-config")))
    ports = Ports(
        **{
            field: int(env[f"SAXGW_CT_{field.upper()}_PORT"])
            for field in ("http", "envoy_admin", "gateway", "admin", "model", "ops")
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
    """A client that sends the stack's API key."""
    with httpx.Client(base_url=compose.http_url, timeout=30, headers=AUTH) as client:
        yield client
