"""The parts of the stacks the e2e, security and fault tests start, as `saxgw up` runs them:
everything on free loopback ports, the cell's state and the logs under one folder.

    settings = StackSettings(
        gateway=gateway_settings(base), cell=cell_settings(base, servers=2),
        gateway_ports=(free_port(),), envoy=loopback_envoy(), log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "the stack") as stack: ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cell import CellSettings
from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port, port_open
from gateway.launch.stack import Stack, StackSettings
from tests._deployment import http_liveness
from tests._wait import wait_until

CELL = "/sax/test"


def logs_dir(base: Path) -> Path:
    """``base/logs``, made."""
    logs = base / "logs"
    logs.mkdir()
    return logs


def gateway_settings(base: Path, **options: Any) -> GatewaySettings:
    """Gateway processes for the cell under ``base``, with a 20 s default timeout."""
    client = ClientSettings(sax_root=str(base / "sax-root"))
    return GatewaySettings(client=client, default_timeout=20.0, **options)


def cell_settings(base: Path, servers: int, **options: Any) -> CellSettings:
    """The embedded cell ``CELL`` under ``base``: an admin and ``servers`` model servers."""
    return CellSettings(
        sax_root=str(base / "sax-root"),
        fs_root=str(base / "fs-root"),
        cell=CELL,
        admin_port=free_port(),
        num_model_servers=servers,
        model_server_ports=tuple(free_port() for _ in range(servers)),
        **options,
    )


def loopback_envoy(**options: Any) -> EnvoySettings:
    """Envoy listening on loopback (the stack fills in the gateways' endpoints)."""
    return EnvoySettings(
        gateway_endpoints=(),
        listen_address="127.0.0.1",
        listen_port=free_port(),
        admin_port=free_port(),
        **options,
    )


def tail_logs(logs: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of every log in ``logs``, for a failure message."""
    return "\n".join(
        f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        for p in sorted(logs.glob("*.log"))
    )


@contextmanager
def healthy_stack(settings: StackSettings, what: str) -> Iterator[Stack]:
    """Runs the stack; fails the test with its logs if it never becomes healthy."""
    with Stack(settings) as running:
        if not running.wait_healthy(timeout=60):
            logs = tail_logs(Path(settings.log_dir or "."))
            pytest.fail(f"{what} never became healthy; logs:\n{logs}")
        yield running


def wait_listening(
    process: subprocess.Popen[bytes], port: int, log: Path, what: str, timeout: float
) -> None:
    """Waits until ``process`` (``what``, which logs to ``log``) listens on 127.0.0.1:``port``;
    fails the test, with the log, if it exits first, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not port_open(f"127.0.0.1:{port}"):
        if process.poll() is not None:
            pytest.fail(f"{what} exited; its log:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not listen on {port} within {timeout:g} s")
        time.sleep(0.1)


#: Envoy's count of the requests it sent on to a gateway (its health checks are not counted).
FORWARDED = "cluster.gateway_grpc.upstream_rq_total"


def envoy_stat(stack: Stack, name: str) -> int:
    """One counter or gauge of the stack's Envoy, from its admin (0 until Envoy makes it)."""
    envoy = stack.envoy
    url = f"http://{envoy.admin_address}:{envoy.admin_port}/stats?filter=^{name}$"
    text = httpx.get(url, timeout=10).text
    return sum(int(line.rpartition(":")[2]) for line in text.splitlines() if line)


def wait_forwarded(stack: Stack, since: int, timeout: float = 30.0) -> None:
    """Waits until Envoy has sent a gateway a request since its `FORWARDED` count was
    ``since``: a call started in the background has reached a gateway, where a fixed sleep
    only makes that likely."""
    what = f"Envoy sends a gateway a request (sent: {since})"
    wait_until(what, lambda: envoy_stat(stack, FORWARDED) > since, timeout)


#: Envoy's count of the requests open at a gateway, as it sent them on.
AT_GATEWAYS = "cluster.gateway_grpc.upstream_rq_active"


def wait_at_gateways(stack: Stack, calls: int) -> None:
    """Waits until ``calls`` requests are open at the stack's gateways: calls started in the
    background are in flight there, where a fixed sleep only makes that likely."""
    what = f"{calls} calls open at the gateways"
    wait_until(what, lambda: envoy_stat(stack, AT_GATEWAYS) >= calls)


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process ``pid`` stopped (SIGSTOP: alive, accepting connections, answering nothing)
    for the block, then continued, however the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def cell_less_gateway(base: Path) -> AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    """A `lone_gateway` whose SAX_ROOT, ``base``, holds no cell: it runs and answers,
    NOT_SERVING."""
    return lone_gateway(base, str(base))


@contextmanager
def lone_gateway(
    base: Path, sax_root: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A `saxgw gateway` process of its own (and its port, once it listens) on ``sax_root``,
    with ``env`` added to its environment. Its log is ``base/gateway.log``."""
    port = free_port()
    argv = ["gateway", "--host", "127.0.0.1", "--port", str(port), "--sax-root", sax_root]
    with (base / "gateway.log").open("w") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *argv],
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_listening(gateway, port, base / "gateway.log", "the gateway", timeout=60)
        yield gateway, port
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)


@contextmanager
def ops_as_deployed(base: Path, envoy_admin: str) -> Iterator[tuple[int, int]]:
    """The pod's ops server, run with the manifest's own args (loopback, a free port, a
    metrics folder under ``base``, this stack's Envoy admin instead of the pod's); yields its
    pid and port."""
    _, args, _ = http_liveness("ops")
    port = free_port()
    (base / "metrics").mkdir()
    where = {
        "0.0.0.0": "127.0.0.1",
        "::": "127.0.0.1",
        "8889": str(port),
        "/run/saxgw/metrics": str(base / "metrics"),
        "127.0.0.1:9901": envoy_admin,
    }
    argv = [sys.executable, "-m", "gateway.cli", *(where.get(a, a) for a in args)]
    log = base / "ops.log"
    with log.open("wb") as out, subprocess.Popen(argv, stdout=out, stderr=out) as ops:
        try:
            wait_listening(ops, port, log, "the ops server", timeout=30)
            yield ops.pid, port
        finally:
            ops.kill()
