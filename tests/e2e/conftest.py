"""The whole stack, as `saxgw up` runs it, on free ports: embedded cell, gateway, real Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._otlp import Receiver
from tests._stacks import (
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
    tail_logs,
)
from tests.e2e._openai import openai_models as publish_openai_models
from tests.e2e._openai import write_config

# Short, so a test can show that streams outlive it while unary calls do not.
ROUTE_TIMEOUT = 3.0


def stack_settings(base: Path) -> StackSettings:
    """The e2e tests' stack, its files and logs under ``base``."""
    return StackSettings(
        # The config file holds the OpenAI face's models: section.
        gateway=gateway_settings(base, config_file=str(write_config(base))),
        # Fast admin cycles, so replicas load and dead servers go within a second or two.
        cell=cell_settings(base, servers=2, poll_interval=0.3, server_dead_after=2),
        gateway_ports=(free_port(), free_port()),  # calls alternate between two processes
        envoy=loopback_envoy(cors_origins=("http://allowed.example",), route_timeout=ROUTE_TIMEOUT),
        log_dir=str(logs_dir(base)),
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running stack shared by the e2e tests; its logs land in the session's tmp dir."""
    base = tmp_path_factory.mktemp("stack")
    with healthy_stack(stack_settings(base), "stack") as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP/1.1 client for Envoy's public listener."""
    # Nothing restarts a test stack's children: a child that died (Envoy's guard dog, say)
    # failed every later test on that stack with "Connection refused", and said no more.
    if dead := stack.group.exited():
        logs = tail_logs(Path(stack.settings.log_dir or "."))
        pytest.fail(f"the stack's {', '.join(dead)} exited in an earlier test; logs:\n{logs}")
    with httpx.Client(base_url=stack.http_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def openai_models(stack: Stack) -> Iterator[None]:
    """The models the OpenAI-compatible API tests use (tests/e2e/_openai.py)."""
    with publish_openai_models(stack):
        yield


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A real OTLP/gRPC receiver of the module's own, for stacks that export traces to it."""
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()
