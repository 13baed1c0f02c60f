"""A full, read-only or vanished metrics directory costs the gateways their metrics, never
their calls, and the scrape says so.

Each case gives a gateway process and an ops server, both real processes, a metrics directory
of its own in front of the fault stack's cell: for a full or read-only one, a small tmpfs
(root only: skipped elsewhere)."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway.launch.processes import ProcessGroup, free_port, port_open
from gateway.launch.stack import health_answers
from gateway.ops import OpsSettings
from gateway.ops.args import ops_argv
from gateway.service.args import gateway_argv
from tests.faults.conftest import Faults, publish

WRITABLE = "saxgw_metrics_dir_writable"


@contextlib.contextmanager
def _tmpfs(path: Path, *options: str) -> Iterator[Path]:
    path.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "saxgw-test", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(directory: Path) -> Path:
    """Writes a file until the filesystem is full; returns it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


@contextlib.contextmanager
def _gateway_and_ops(faults: Faults, metrics: Path, logs: Path) -> Iterator[tuple[str, str]]:
    """A gateway process and an ops server sharing ``metrics``; yields their addresses."""
    base = faults.stack.settings.gateway
    telemetry = dataclasses.replace(base.telemetry, metrics=True, metrics_dir=str(metrics))
    gateway = dataclasses.replace(base, port=free_port(), telemetry=telemetry)
    ops = OpsSettings(port=free_port(), metrics_dir=str(metrics))
    address, ops_address = f"127.0.0.1:{gateway.port}", f"127.0.0.1:{ops.port}"
    group = ProcessGroup(grace=5)
    try:
        group.start("gateway", gateway_argv(gateway), log_path=str(logs / "gateway.log"))
        group.start("ops", ops_argv(ops, "json"), log_path=str(logs / "ops.log"))
        group.wait_until("gateway", lambda: health_answers(address), 30)
        group.wait_until("ops", lambda: port_open(ops_address), 30)
        yield address, f"http://{ops_address}/metrics"
    finally:
        group.stop()


def _calls_answer(address: str, model: str, logs: Path) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for i in range(20):
            request = gateway_pb2.GenerateRequest(model=model, query=f"call {i}")
            try:
                reply = stub.Generate(request, timeout=10)
            except grpc.RpcError as exc:
                pytest.fail(f"call {i}: {exc}; gateway log:\n{(logs / 'gateway.log').read_text()}")
            assert [t.text for t in reply.texts] == [f"call {i}"]


def _writable_gauge(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return next(line for line in response.text.splitlines() if line.startswith(WRITABLE + " "))


def test_a_full_metrics_directory_costs_metrics_not_calls(
    faults: Faults, http: httpx.Client, tmp_path: Path
) -> None:
    model = "/sax/test/metricsfull"
    publish(http, model)
    with _tmpfs(tmp_path / "metrics") as metrics:
        filler = _fill(metrics)
        with _gateway_and_ops(faults, metrics, tmp_path) as (address, scrape):
            # Before: the gateway died of SIGBUS at its first call (prometheus_client maps
            # sparse files), and again after each restart.
            _calls_answer(address, model, tmp_path)
            assert _writable_gauge(scrape) == f"{WRITABLE} 0"
            filler.unlink()
            assert _writable_gauge(scrape) == f"{WRITABLE} 1"
            _calls_answer(address, model, tmp_path)
    log = (tmp_path / "gateway.log").read_text()
    assert "refused this process's metrics (No space left on device)" in log


def test_a_read_only_metrics_directory_costs_metrics_not_calls(
    faults: Faults, http: httpx.Client, tmp_path: Path
) -> None:
    model = "/sax/test/metricsro"
    publish(http, model)
    with (
        _tmpfs(tmp_path / "metrics", "ro") as metrics,
        _gateway_and_ops(faults, metrics, tmp_path) as (address, scrape),
    ):
        # Before: the gateway could not start (OSError: Read-only file system).
        _calls_answer(address, model, tmp_path)
        assert _writable_gauge(scrape) == f"{WRITABLE} 0"
    log = (tmp_path / "gateway.log").read_text()
    assert "refused this process's metrics (Read-only file system)" in log


def test_a_vanished_metrics_directory_leaves_calls_and_scrapes_working(
    faults: Faults, http: httpx.Client, tmp_path: Path
) -> None:
    model = "/sax/test/metricsgone"
    publish(http, model)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    with _gateway_and_ops(faults, metrics, tmp_path) as (address, scrape):
        _calls_answer(address, model, tmp_path)
        assert _writable_gauge(scrape) == f"{WRITABLE} 1"
        metrics.rename(tmp_path / "elsewhere")  # unmounted, or cleaned away
        _calls_answer(address, model, tmp_path)
        # Before: every scrape dropped its connection without an answer (the collector
        # raised "PROMETHEUS_MULTIPROC_DIR is not set or not a directory").
        assert _writable_gauge(scrape) == f"{WRITABLE} 0"
