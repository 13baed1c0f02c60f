"""One stack for the fault tests, as `saxgw up` runs it (2 gateways, an embedded cell with 2
model servers, Envoy) on free ports, with the cell's default timings and small edge limits
so that limits are reached with few connections. Tests kill its processes for real; the
cell restarts its own servers, and `Faults.tick` (the supervisor of `saxgw up`) the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.cell.models import test_lm
from gateway.edge import EdgeConfig, Limits
from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from tests._stacks import (
    cell_settings,
    gateway_settings,
    logs_dir,
    loopback_envoy,
    tail_logs,
)
from tests.e2e._published import publish_body

TEST_LM = test_lm.MODEL_PATH
MAX_REQUEST_BYTES = 2 << 20  # above the 1 MiB name of test_inputs
MAX_STREAMS_PER_CLIENT = 8
REQUEST_HEADERS_TIMEOUT = 2.0


@dataclass
class Faults:
    """The running stack, its supervisor, and ways to kill its parts."""

    stack: Stack
    supervisor: Supervisor
    logs: Path

    @property
    def url(self) -> str:
        return self.stack.http_url

    @property
    def admin_port(self) -> int:
        assert self.stack.settings.cell is not None
        return self.stack.settings.cell.admin_port

    def tick(self) -> None:
        self.supervisor.tick()

    def pid(self, port: int, timeout: float = 60.0) -> int:
        """The pid listening on ``port`` (waits for one, e.g. while it restarts)."""
        found: list[int] = []

        def listening() -> bool:
            pid = listener_pid(port)
            if pid is not None:
                found.append(pid)
            return pid is not None

        self.wait_until(listening, timeout, f"something to listen on port {port}")
        return found[-1]

    def kill(self, port: int) -> int:
        """kill -9 of the process listening on ``port``; returns its pid."""
        pid = self.pid(port)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.tick()
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout:.0f} s for {what}; logs:\n{self.tail_logs()}")
            time.sleep(0.1)

    def healthy(self) -> None:
        """Waits until every process runs and Envoy's /healthz says 200."""

        def ok() -> bool:
            if self.stack.group.exited():
                return False
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(ok, 90, "a healthy stack")

    def routed_to_every_gateway(self) -> None:
        """Waits until Envoy's health checks have found every gateway healthy (/healthz is
        200 as soon as one is): until then, all calls go to those it found."""

        def healthy(line: str) -> bool:
            cluster, _, flag, *value = line.split("::")
            return (
                cluster not in ("gateway_grpc", "gateway_open")
                or flag != "health_flags"
                or (value == ["healthy"])
            )

        def all_healthy() -> bool:
            url = f"http://127.0.0.1:{self.stack.envoy.admin_port}/clusters"
            try:
                lines = httpx.get(url, timeout=2).text.splitlines()
            except httpx.HTTPError:
                return False
            return all(healthy(line) for line in lines if line.count("::") == 3)

        self.wait_until(all_healthy, 60, "Envoy to route to every gateway")

    def tail_logs(self) -> str:
        return tail_logs(self.logs, lines=20)


@pytest.fixture(scope="session")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    base = tmp_path_factory.mktemp("faults")
    logs = logs_dir(base)
    limits = Limits(
        max_request_bytes=MAX_REQUEST_BYTES,
        request_headers_timeout=REQUEST_HEADERS_TIMEOUT,
        trusted_proxy_hops=1,  # as behind a load balancer; clients that send no XFF are the peer
    )
    settings = StackSettings(
        gateway=gateway_settings(base, max_streams_per_client=MAX_STREAMS_PER_CLIENT),
        # The cell's default timings, what `saxgw up` runs, but two, since the fault tests of
        # one process share this stack: room for every model they publish (none unpublishes;
        # at the default 16 per server, a full server took no replica of a later 2-replica
        # publish), and a killed admin back within a second however many tests killed it
        # in the last minute (by default the wait doubles to 2 s, 4 s, ... 30 s).
        cell=cell_settings(base, servers=2, max_models_per_server=256, max_restart_backoff=1),
        gateway_ports=(free_port(), free_port()),
        envoy=loopback_envoy(edge=EdgeConfig(limits=limits)),
        log_dir=str(logs),
    )
    with Stack(settings) as stack:
        # No watchdog (no probes): tests here hang processes on purpose, for longer than
        # `saxgw up`'s would let them (tests/faults/test_watchdog.py tests it).
        running = Faults(
            stack=stack, supervisor=Supervisor(stack.group, settings.restart), logs=logs
        )
        running.healthy()
        yield running


@pytest.fixture
def http(faults: Faults) -> Iterator[httpx.Client]:
    faults.healthy()  # an earlier test may have killed something
    with httpx.Client(base_url=faults.url, timeout=30) as client:
        yield client


def publish(http: httpx.Client, model: str, replicas: int = 1, **overrides: str) -> None:
    """Publishes the test LM and waits until ``replicas`` replicas serve it."""
    response = http.post("/publish", json=publish_body(model, TEST_LM, replicas, **overrides))
    assert response.status_code == 200, response.text
    ready = http.post(
        "/wait_for_ready", json={"model": model, "replicas": replicas, "timeout": "30s"}
    )
    assert ready.status_code == 200, ready.text


def answers(url: str, model: str, *, timeout: float = 2.0) -> bool:
    """Whether a generate through ``url`` (Envoy) succeeds now, with the answer of a test LM
    published with ``text="still here"``: a connection refused or another status is False.
    A loop's probe keeps the short ``timeout`` (a hung process is asked again soon); a test
    that asserts one answer gives it a long one, which a loaded host does not run out of."""
    try:
        response = httpx.post(
            url + "/generate", json={"model": model, "query": "q"}, timeout=timeout
        )
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    assert response.json() == {"texts": [{"text": "still here", "score": pytest.approx(-0.2)}]}
    return True


@contextlib.contextmanager
def watches(url: str, model: str, count: int) -> Iterator[list[int]]:
    """Opens ``count`` :watch streams (one HTTP/1.1 connection each); yields their statuses."""
    with contextlib.ExitStack() as stack:
        statuses = []
        for _ in range(count):
            client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
            response = stack.enter_context(client.stream("GET", f"/v1{model}:watch"))
            statuses.append(response.status_code)
        yield statuses
