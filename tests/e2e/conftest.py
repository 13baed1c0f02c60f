"""The whole stack, as `saxgw up` runs it, on free ports: embedded cell, gateway, real Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cell import CellSettings
from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests.e2e._openai import openai_models as publish_openai_models
from tests.e2e._openai import write_config

CELL = "/sax/test"
# Short, so a test can show that streams outlive it while unary calls do not.
ROUTE_TIMEOUT = 3.0


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running stack shared by the e2e tests; its logs land in the session's tmp dir."""
    base = tmp_path_factory.mktemp("stack")
    logs = base / "logs"
    logs.mkdir()
    sax_root = str(base / "sax-root")
    settings = StackSettings(
        gateway=GatewaySettings(
            client=ClientSettings(sax_root=sax_root),
            default_timeout=20.0,
            config_file=str(write_config(base)),  # the OpenAI face's models: section
        ),
        cell=CellSettings(
            sax_root=sax_root,
            fs_root=str(base / "fs-root"),
            cell=CELL,
            admin_port=free_port(),
            num_model_servers=2,
            model_server_ports=(free_port(), free_port()),
            # Fast admin cycles, so replicas load and dead servers go within a second or two.
            poll_interval=0.3,
            server_dead_after=2,
        ),
        gateway_ports=(free_port(), free_port()),  # calls alternate between two processes
        envoy=EnvoySettings(
            gateway_endpoints=(),
            listen_address="127.0.0.1",
            listen_port=free_port(),
            admin_port=free_port(),
            cors_origins=("http://allowed.example",),
            route_timeout=ROUTE_TIMEOUT,
        ),
        log_dir=str(logs),
    )
    with Stack(settings) as running:
        if not running.wait_healthy(timeout=60):
            pytest.fail("stack never became healthy; logs:\n" + _tail_logs(logs))
        yield running


def _tail_logs(logs: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
        for p in sorted(logs.glob("*.log"))
    )


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP/1.1 client for Envoy's public listener."""
    with httpx.Client(base_url=stack.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def openai_models(stack: Stack) -> Iterator[None]:
    """The models the OpenAI-compatible API tests use (tests/e2e/_openai.py)."""
    with publish_openai_models(stack):
        yield
