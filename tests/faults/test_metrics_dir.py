"""A full, read-only or vanished metrics directory costs the gateways their metrics, never
their calls, and the scrape says so; the files of gateways that exited or were killed are
folded into the ops server's archives without changing a scraped value.

Each case gives gateway processes and an ops server, all real processes, a metrics directory
of its own in front of the fault stack's cell: for a full or read-only one, a small tmpfs
(root only: skipped elsewhere)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import time
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
from tests._metricsdir import Values, unfolded, values
from tests._tmpfs import fill, tmpfs
from tests.faults.conftest import Faults, publish

WRITABLE = "saxgw_metrics_dir_writable"


@dataclasses.dataclass
class _Running:
    group: ProcessGroup
    gateways: dict[str, str]
    """name -> address"""
    scrape: str
    """the ops server's /metrics URL"""


@contextlib.contextmanager
def _gateways_and_ops(
    faults: Faults, metrics: Path, logs: Path, names: tuple[str, ...] = ("gateway",)
) -> Iterator[_Running]:
    """Gateway processes (``names``, logging to ``<name>.log``) and an ops server sharing
    ``metrics``."""
    base = faults.stack.settings.gateway
    telemetry = dataclasses.replace(base.telemetry, metrics=True, metrics_dir=str(metrics))
    ops = OpsSettings(port=free_port(), metrics_dir=str(metrics))
    ops_address = f"127.0.0.1:{ops.port}"
    group = ProcessGroup(grace=5)
    running = _Running(group, {}, f"http://{ops_address}/metrics")
    try:
        for name in names:
            gateway = dataclasses.replace(base, port=free_port(), telemetry=telemetry)
            group.start(name, gateway_argv(gateway), log_path=str(logs / f"{name}.log"))
            running.gateways[name] = f"127.0.0.1:{gateway.port}"
        group.start("ops", ops_argv(ops, "json"), log_path=str(logs / "ops.log"))
        for name, address in running.gateways.items():
            group.wait_until(name, functools.partial(health_answers, address), 30)
        group.wait_until("ops", lambda: port_open(ops_address), 30)
        yield running
    finally:
        group.stop()


@contextlib.contextmanager
def _gateway_and_ops(faults: Faults, metrics: Path, logs: Path) -> Iterator[tuple[str, str]]:
    """A gateway process and an ops server sharing ``metrics``; yields their addresses."""
    with _gateways_and_ops(faults, metrics, logs) as running:
        yield running.gateways["gateway"], running.scrape


def _calls_answer(address: str, model: str, logs: Path, name: str = "gateway") -> None:
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for i in range(20):
            request = gateway_pb2.GenerateRequest(model=model, query=f"call {i}")
            try:
                reply = stub.Generate(request, timeout=10)
            except grpc.RpcError as exc:
                pytest.fail(f"call {i}: {exc}; {name} log:\n{(logs / f'{name}.log').read_text()}")
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
    with tmpfs(tmp_path / "metrics") as metrics:
        filler = fill(metrics)
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
        tmpfs(tmp_path / "metrics", "ro") as metrics,
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


ARCHIVES = ["counter_archive.db", "histogram_archive.db"]
_GENERATE_OK = (
    "saxgw_requests_total",
    (("client", "anonymous"), ("grpc_code", "OK"), ("grpc_method", "Generate")),
)


def _scraped(url: str) -> Values:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return values(response.text)


def _until_counted(url: str, calls: int) -> None:
    """Waits until the scrape shows ``calls`` calls (each process writes its counts out once a
    second)."""
    deadline = time.monotonic() + 30
    while _scraped(url).get(_GENERATE_OK) != calls:
        assert time.monotonic() < deadline, _scraped(url)
        time.sleep(0.2)


def _db_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.db"))


def test_a_fold_keeps_every_total_of_gateways_that_exited_or_were_killed(
    faults: Faults, http: httpx.Client, tmp_path: Path
) -> None:
    model = "/sax/test/metricsfold"
    publish(http, model)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    names = ("stopped", "killed")
    with _gateways_and_ops(faults, metrics, tmp_path, names) as running:
        for name, address in running.gateways.items():
            _calls_answer(address, model, tmp_path, name)
        _until_counted(running.scrape, 40)
        gateways = dict(running.group.children)
        gateways["stopped"].send_signal(signal.SIGTERM)
        gateways["killed"].kill()
        assert [gateways[name].wait(timeout=30) for name in names] == [0, -signal.SIGKILL]
        before = unfolded(metrics, tmp_path / "before")
        assert before[_GENERATE_OK] == 40
        after = _scraped(running.scrape)
        # The same sums: counts exactly, float sums of seconds up to their last bit (files
        # are added up in another order). Before, every process's files stayed for good.
        assert after == pytest.approx(before, rel=1e-12, abs=0)
        assert _db_files(metrics) == ARCHIVES
        assert _scraped(running.scrape) == after


def test_a_full_metrics_directory_keeps_gone_gateways_files_until_it_has_room(
    faults: Faults, http: httpx.Client, tmp_path: Path
) -> None:
    model = "/sax/test/metricsfoldfull"
    publish(http, model)
    with (
        tmpfs(tmp_path / "metrics") as metrics,
        _gateways_and_ops(faults, metrics, tmp_path) as running,
    ):
        _calls_answer(running.gateways["gateway"], model, tmp_path)
        _until_counted(running.scrape, 20)
        gateway = dict(running.group.children)["gateway"]
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
        gone = _db_files(metrics)
        filler = fill(metrics)
        before = unfolded(metrics, tmp_path / "before")
        # The archive would not fit: the fold waits (the ops server must not die of SIGBUS
        # writing it, as a gateway did), and the scrape is whole.
        assert _scraped(running.scrape) == before
        assert _writable_gauge(running.scrape) == f"{WRITABLE} 0"
        assert _db_files(metrics) == gone and not list(metrics.glob("*.new"))
        filler.unlink()
        assert _scraped(running.scrape) == pytest.approx(before, rel=1e-12, abs=0)
        assert _db_files(metrics) == ARCHIVES
        assert running.group.exited() == ["gateway"]
    log = (tmp_path / "ops.log").read_text()
    assert "cannot fold gone processes' metrics files" in log
    assert "No space left on device" in log
