"""How the stack uses a host's cores (gateway/launch/tuning.py, gateway/cli/_workers.py), and
that the installed grpcio still knows the experiments the gateway turns off."""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import _workers
from gateway.cli.main import parser
from gateway.client import ClientSettings
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings
from gateway.launch.envoy import EnvoySettings, envoy_concurrency_flags
from gateway.launch.stack import StackSettings
from gateway.launch.tuning import (
    GRPC_EXPERIMENTS_OFF,
    CorePlan,
    connections_within,
    grpc_env,
    plan_cores,
    raise_open_files_limit,
    run,
)


def _grpc_import_log(experiments: str) -> str:
    """What grpc logs when a fresh process imports it with ``GRPC_EXPERIMENTS``."""
    done = subprocess.run(
        [sys.executable, "-c", "import grpc"],
        env={"GRPC_EXPERIMENTS": experiments, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stderr


def test_installed_grpcio_knows_the_experiments_the_gateway_turns_off() -> None:
    # grpc logs "Unknown experiment: <name>" for a name it no longer has (an upgrade that
    # removed it): then the setting silently does nothing and the benchmark must be redone.
    assert "Unknown experiment" in _grpc_import_log("-no_such_experiment_h18")
    log = _grpc_import_log(grpc_env()["GRPC_EXPERIMENTS"])
    assert "Unknown experiment" not in log, log
    assert grpc_env() == {"GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener"}
    assert set(GRPC_EXPERIMENTS_OFF) == {"event_engine_client", "event_engine_listener"}


def test_the_image_sets_the_same_grpc_tuning() -> None:
    # Containers run `saxgw gateway` directly, without the stack that sets it.
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    assert f"ENV GRPC_EXPERIMENTS={grpc_env()['GRPC_EXPERIMENTS']}\n" in dockerfile


def test_stack_starts_gateways_with_the_grpc_tuning() -> None:
    gateway = GatewaySettings(client=ClientSettings(sax_root="/tmp/root"))
    assert dict(StackSettings(gateway=gateway).gateway_env) == grpc_env()


@pytest.mark.parametrize(
    ("workers", "cores", "plan"),
    [
        ("auto", 1, CorePlan(envoy=1, workers=1)),
        ("auto", 2, CorePlan(envoy=1, workers=1)),
        ("auto", 4, CorePlan(envoy=1, workers=3)),
        ("auto", 8, CorePlan(envoy=3, workers=5)),
        (2, 2, CorePlan(envoy=1, workers=2)),
        (3, 16, CorePlan(envoy=5, workers=3)),
    ],
)
def test_core_plan(workers: str | int, cores: int, plan: CorePlan) -> None:
    assert plan_cores(workers, cores) == plan


def _up(*flags: str) -> argparse.Namespace:
    return parser().parse_args(["up", *flags])


def test_workers_become_consecutive_gateway_ports() -> None:
    args = _up("--workers", "3", "--gateway-ports", "7000")
    assert _workers.gateway_ports(args, cores=2) == [7000, 7001, 7002]
    args = _up("--workers", "auto")
    assert _workers.gateway_ports(args, cores=8) == [DEFAULT_GATEWAY_PORT + i for i in range(5)]
    args = _up("--gateway-ports", "7000,7005")  # no --workers: one gateway per port, as before
    assert _workers.gateway_ports(args, cores=8) == [7000, 7005]
    args = _up("--workers", "2", "--gateway-ports", "7000,7005")
    assert _workers.gateway_ports(args, cores=8) == [7000, 7005]


def test_more_workers_than_cores_is_a_warning_not_an_error() -> None:
    warning = _workers.oversubscribed(_up("--workers", "64"), cores=2)
    assert warning is not None and "--workers 64 on 2 usable cores" in warning
    assert _workers.oversubscribed(_up("--workers", "2"), cores=2) is None
    assert _workers.oversubscribed(_up("--workers", "auto"), cores=2) is None
    assert _workers.oversubscribed(_up(), cores=1) is None  # no --workers: the ports decide


def test_workers_that_contradict_the_ports_are_an_error() -> None:
    args = _up("--workers", "3", "--gateway-ports", "7000,7005")
    with pytest.raises(SystemExit, match="names 2 ports but --workers asks for 3"):
        _workers.gateway_ports(args, cores=8)


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_bad_workers_are_refused_by_the_parser(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _up("--workers", bad)
    assert "--workers" in capsys.readouterr().err


def test_envoy_concurrency_flag() -> None:
    assert _workers.envoy_concurrency(_up(), cores=2) == 1
    assert _workers.envoy_concurrency(_up(), cores=9) == 3
    assert _workers.envoy_concurrency(_up("--envoy-concurrency", "4"), cores=2) == 4
    settings = EnvoySettings(gateway_endpoints=(), concurrency=2)
    assert envoy_concurrency_flags(settings) == ["--concurrency", "2"]
    assert envoy_concurrency_flags(EnvoySettings(gateway_endpoints=())) == []


def test_open_files_limit_is_raised_within_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        got = raise_open_files_limit(wanted=min(4096, hard))
        assert got == min(4096, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_envoy_connections_fit_its_open_files() -> None:
    assert connections_within(20_000, 65_536) == 20_000
    assert connections_within(20_000, 20_000) == 20_000 - 1024  # this host's limit
    assert connections_within(20_000, 512) == 384  # a quarter kept for its other files
    assert connections_within(100, 512) == 100
    assert connections_within(20_000, 1) == 1
    # Never fewer than what Envoy holds with no client (26) and some room: a quarter of 64
    # left it 48 connections, past its descriptors (the watchdog killed it, calls and all).
    assert connections_within(20_000, 64) == 64 - 48
    assert connections_within(20_000, 128) == 128 - 48


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_gateway_processes_run_on_uvloop_unless_told_to_use_asyncio() -> None:
    # uvloop is a dependency here (Linux): "auto" must pick it, or the gateway silently loses
    # the CPU it saves (BENCHMARKS.md).
    assert run(_loop_module()).startswith("uvloop")
    assert run(_loop_module(), loop="uvloop").startswith("uvloop")
    assert run(_loop_module(), loop="asyncio").startswith("asyncio")
    gateway = ["gateway", "--sax-root", "/tmp/sax-root"]
    args = parser().parse_args([*gateway, "--event-loop", "asyncio"])
    assert args.event_loop == "asyncio"
    assert parser().parse_args(gateway).event_loop == "auto"
