"""Everything the benchmarks run against, started on free ports and pinned to CPUs.

    with BenchStack(workdir) as stack:
        stack.envoy_url, stack.model_server, stack.pid("gateway-0")

CPU pinning (2 cores): core 0 runs the Sax cell (admin and model server), the stand-in for
the accelerator host; core 1 runs everything in front of it: Envoy, the gateway, the
seed-style baseline, the admin proxy, this process and its load generators. Children inherit
the mask of the thread that starts them, so the cell is started with this thread moved to
core 0 for the moment, and the rest from core 1.

Discovery is counted at the admin: the gateway and a second baseline instance get their own
SAX_ROOT whose ``location.proto`` names a port of the counting proxy (`_admin_proxy`). The
baseline measured for throughput talks to the admin directly, so the proxy's own hop does
not slow the one per-request admin call it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from saxml.protobuf import admin_pb2

from gateway.client import Client, ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import ProcessGroup, free_port, port_open
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.tuning import grpc_env, plan_cores

CELL = "/sax/test"
TEST_LM = "sax_gateway.testing.TestLM"
UNARY_MODEL = f"{CELL}/bench"
STREAM_MODEL = f"{CELL}/benchstream"
MANY_MODEL = f"{CELL}/benchmany"
PROMPT = "Q: Who is Harry Potter's mom? A: "
STREAM_TOKENS = 20
STREAM_DELAY_MS = 20
# Many open streams (bench/_many_streams.py): each lives two minutes, so that 10,000 are
# open at once even when opening them takes tens of seconds, and ends on its own.
MANY_TOKENS = 12
MANY_DELAY_MS = 10_000  # the embedded cell allows up to 10 s
MANY_IN_FLIGHT = 20_000
MANY_TEXT = "".join(f" m{i}" if i else "m0" for i in range(MANY_TOKENS))

# The comparison row: a gateway with grpcio's own defaults (EventEngine client and listener
# on), where the stack's gateways run with gateway/launch/tuning.py's settings.
GRPC_DEFAULTS = ""

MODELS = {
    UNARY_MODEL: {"text": "Lily Evans Potter."},
    STREAM_MODEL: {
        "text": " ".join(f"t{i}" for i in range(STREAM_TOKENS)),
        "delay_ms": str(STREAM_DELAY_MS),
        "bench_stamp": "1",
    },
    MANY_MODEL: {"text": MANY_TEXT, "delay_ms": str(MANY_DELAY_MS)},
}


@dataclass(frozen=True)
class Cpus:
    cell: set[int]
    front: set[int]

    @staticmethod
    def pick() -> Cpus:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return Cpus(set(cpus), set(cpus))
        return Cpus({cpus[0]}, {cpus[1]})


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Moves this thread to ``cpus`` for the block: children started in it inherit the mask."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def raise_open_files_limit() -> int:
    """Raises RLIMIT_NOFILE to its hard limit (children inherit it); returns the new limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
        return max(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class BenchStack:
    """The cell, the counting admin proxy, gateway + Envoy, and two baseline servers."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.cpus = Cpus.pick()
        self.group = ProcessGroup(grace=5.0)
        self.real_root = workdir / "sax-root"
        self.admin_port = free_port()
        self.model_server_port = free_port()
        self.proxy_ports = {"gateway": free_port(), "baseline": free_port()}
        self.gateway_port = free_port()
        self.envoy_port = free_port()
        self.baseline_port = free_port()
        self.counted_baseline_port = free_port()
        self.gateway_ee_port = free_port()
        # The telemetry A/B: the same gateway with metrics off, and with tracing on.
        self.gateway_nometrics_port = free_port()
        self.gateway_costheader_port = free_port()
        self.gateway_asyncio_port = free_port()
        self.floor_port = free_port()
        self.direct_envoy_port = free_port()
        self.full_envoy_port = free_port()
        self.product_direct_port = free_port()
        self.gateway_tracing_port = free_port()
        self.otlp_port = free_port()
        self._stack: Stack | None = None

    # Addresses.
    @property
    def model_server(self) -> str:
        return f"127.0.0.1:{self.model_server_port}"

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def gateway_ee(self) -> str:
        return f"127.0.0.1:{self.gateway_ee_port}"

    @property
    def gateway_nometrics(self) -> str:
        return f"127.0.0.1:{self.gateway_nometrics_port}"

    @property
    def gateway_costheader(self) -> str:
        return f"127.0.0.1:{self.gateway_costheader_port}"

    @property
    def floor(self) -> str:
        return f"127.0.0.1:{self.floor_port}"

    @property
    def gateway_asyncio(self) -> str:
        return f"127.0.0.1:{self.gateway_asyncio_port}"

    @property
    def gateway_tracing(self) -> str:
        return f"127.0.0.1:{self.gateway_tracing_port}"

    @property
    def direct_envoy(self) -> str:
        return f"127.0.0.1:{self.direct_envoy_port}"

    @property
    def full_envoy(self) -> str:
        return f"127.0.0.1:{self.full_envoy_port}"

    @property
    def product_direct(self) -> str:
        return f"127.0.0.1:{self.product_direct_port}"

    @property
    def envoy(self) -> str:
        return f"127.0.0.1:{self.envoy_port}"

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.proxy_ports['gateway']}"

    @property
    def envoy_admin(self) -> str:
        """Base URL of the stack's Envoy admin (its /memory, /stats)."""
        assert self._stack is not None
        return f"http://127.0.0.1:{self._stack.envoy.admin_port}"

    def pid(self, name: str) -> int:
        """The pid of a child: "gateway-0", "envoy", "modelserver", "baseline", ..."""
        groups = [self.group] + ([self._stack.group] if self._stack else [])
        for group in groups:
            for child, proc in group.children:
                if child == name:
                    return proc.pid
        raise KeyError(name)

    def __enter__(self) -> BenchStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self.group.stop()

    def _log(self, name: str) -> str:
        return str(self.logs / f"{name}.log")

    def _start(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.logs.mkdir(parents=True)
        raise_open_files_limit()
        os.sched_setaffinity(0, self.cpus.front)
        py = sys.executable
        cell_flags = [
            f"--sax-root={self.real_root}",
            f"--fs-root={self.workdir / 'fs-root'}",
            f"--cell={CELL}",
            "--poll-interval=0.5",
            "--log-level=WARNING",
        ]
        with pinned(self.cpus.cell):
            self.group.start(
                "admin",
                [py, "-m", "bench._stamped_admin", *cell_flags, f"--port={self.admin_port}"],
                log_path=self._log("admin"),
            )
            self._wait("admin", f"127.0.0.1:{self.admin_port}")
            self.group.start(
                "modelserver",
                [
                    py,
                    "-m",
                    "bench._stamped_modelserver",
                    *cell_flags,
                    f"--port={self.model_server_port}",
                ],
                log_path=self._log("modelserver"),
            )
            self._wait("modelserver", self.model_server)
        self.group.start(
            "admin-proxy",
            [
                py,
                "-m",
                "bench._admin_proxy",
                f"--target=127.0.0.1:{self.admin_port}",
                *(f"--listen={p}" for p in self.proxy_ports.values()),
            ],
            log_path=self._log("admin-proxy"),
        )
        for port in self.proxy_ports.values():
            self._wait("admin-proxy", f"127.0.0.1:{port}")
        views = {name: self._view_root(name, port) for name, port in self.proxy_ports.items()}
        asyncio.run(self._publish())
        # The many-streams model's own limit of calls in flight in the stack (quotas.models in
        # docs/config.md; 64 by default), as an operator raises it for a long-streaming model.
        config = self.workdir / "saxgw.yaml"
        config.write_text(
            f"quotas:\n  models:\n    {MANY_MODEL}: {{max_in_flight: {MANY_IN_FLIGHT}, "
            "max_queued: 0}\n"
        )
        self._stack = Stack(
            StackSettings(
                gateway=GatewaySettings(
                    client=ClientSettings(sax_root=str(views["gateway"])),
                    default_timeout=60.0,
                    # The bench is one client (127.0.0.1) opening every stream.
                    max_streams_per_client=MANY_IN_FLIGHT,
                    config_file=str(config),
                ),
                gateway_ports=(self.gateway_port,),
                envoy=EnvoySettings(
                    gateway_endpoints=(),
                    listen_address="127.0.0.1",
                    listen_port=self.envoy_port,
                    admin_port=free_port(),
                    concurrency=plan_cores("auto", len(self.cpus.front)).envoy,
                ),
                log_dir=str(self.logs),
            )
        )
        self._stack.__enter__()
        if not self._stack.wait_healthy(60):
            raise RuntimeError(f"the gateway never became healthy; see {self.logs}")
        # The comparison: a second gateway with grpcio's defaults (see BENCHMARKS.md).
        self.group.start(
            "gateway-ee",
            [
                py,
                "-m",
                "gateway.cli",
                "gateway",
                f"--sax-root={self.real_root}",
                "--host=127.0.0.1",
                f"--port={self.gateway_ee_port}",
                "--default-timeout=60",
            ],
            env={"GRPC_EXPERIMENTS": GRPC_DEFAULTS},
            log_path=self._log("gateway-ee"),
        )
        self._wait("gateway-ee", self.gateway_ee)
        # This machine's floor for a Python hop (bench/_floor_proxy.py), tuned like gateway-0.
        self.group.start(
            "floor",
            [
                py,
                "-m",
                "bench._floor_proxy",
                f"--port={self.floor_port}",
                f"--model-server={self.model_server}",
            ],
            env=grpc_env(),
            log_path=self._log("floor"),
        )
        self._wait("floor", self.floor)
        # Design (b)'s ceiling: Envoy straight to the model server (bench/_direct_envoy.py);
        # and (b) as it would be built (bench/_full_envoy.py): the product's listener with API
        # keys, per-model routes, RBAC and clusters, the gateway as its control plane.
        self._start_bench_envoy("envoy-direct", "bench._direct_envoy", self.direct_envoy_port)
        self._start_bench_envoy(
            "envoy-direct-full",
            "bench._full_envoy",
            self.full_envoy_port,
            f"--gateway={self.gateway}",
        )
        self._start_product_direct()
        self._start_telemetry_gateways()
        for name, port, root in (
            ("baseline", self.baseline_port, self.real_root),
            ("baseline-counted", self.counted_baseline_port, views["baseline"]),
        ):
            self.group.start(
                name,
                [
                    py,
                    "-m",
                    "uvicorn",
                    "bench.baseline:app",
                    "--host=127.0.0.1",
                    f"--port={port}",
                    "--log-level=warning",
                    "--no-access-log",
                ],
                env={"SAX_ROOT": str(root)},
                log_path=self._log(name),
            )
            self.group.wait_until(
                name, functools.partial(_http_ok, f"http://127.0.0.1:{port}/"), 60
            )

    def _start_bench_envoy(self, name: str, module: str, port: int, *flags: str) -> None:
        """An Envoy of the bench's own (``module``) in front of the model server, with the
        worker threads the stack's Envoy has."""
        self.group.start(
            name,
            [
                sys.executable,
                "-m",
                module,
                f"--port={port}",
                f"--admin-port={free_port()}",
                f"--model-server={self.model_server}",
                f"--workdir={self.workdir / name}",
                f"--concurrency={plan_cores('auto', len(self.cpus.front)).envoy}",
                *flags,
            ],
            log_path=self._log(name),
        )
        self._wait(name, f"127.0.0.1:{port}")

    def _start_product_direct(self) -> None:
        """The product's direct mode (bench/_product_direct.py): its Envoy, then its control
        plane, and a wait until the bench's model is routed directly."""
        # Here, not at the top: bench._full_envoy, which it builds on, imports this module.
        from bench import _product_direct as product_direct

        name, workdir = "envoy-direct-product", self.workdir / "envoy-direct-product"
        self._start_bench_envoy(
            name, "bench._product_direct", self.product_direct_port, f"--gateway={self.gateway}"
        )
        self.group.start(
            "direct-plane",
            [
                sys.executable,
                "-m",
                "gateway.launch.direct",
                f"--sax-root={self.real_root}",
                f"--config={product_direct.snapshot(workdir)}",
                f"--dir={product_direct.directory(workdir)}",
                "--default-timeout=60",
            ],
            log_path=self._log("direct-plane"),
        )
        routes = product_direct.directory(workdir) / "rds.json"
        self.group.wait_until("direct-plane", lambda: UNARY_MODEL in routes.read_text(), 60)

    def _start_telemetry_gateways(self) -> None:
        """More gateways like gateway-0: metrics off; metrics off and the cost sent as a
        header by the gateway; on asyncio's event loop instead of uvloop; and one tracing
        every call to an OTLP sink (on the cell's core, as a collector would be on another
        host)."""
        py = sys.executable
        with pinned(self.cpus.cell):
            self.group.start(
                "otlp-sink",
                [py, "-m", "bench._otlp_sink", f"--port={self.otlp_port}"],
                log_path=self._log("otlp-sink"),
            )
        self._wait("otlp-sink", f"127.0.0.1:{self.otlp_port}")
        common = [
            py,
            "-m",
            "gateway.cli",
            "gateway",
            f"--sax-root={self.real_root}",
            "--host=127.0.0.1",
            "--default-timeout=60",
        ]
        tracing_metrics = self.workdir / "metrics-tracing"
        tracing_metrics.mkdir()
        variants = {
            "gateway-nometrics": (self.gateway_nometrics_port, ["--no-metrics"]),
            "gateway-costheader": (self.gateway_costheader_port, ["--no-metrics", "--cost-header"]),
            "gateway-asyncio": (self.gateway_asyncio_port, ["--event-loop=asyncio"]),
            "gateway-tracing": (
                self.gateway_tracing_port,
                [
                    f"--metrics-dir={tracing_metrics}",
                    f"--otlp-endpoint=http://127.0.0.1:{self.otlp_port}",
                ],
            ),
        }
        for name, (port, flags) in variants.items():
            self.group.start(
                name,
                [*common, f"--port={port}", *flags],
                env=grpc_env(),  # tuned like gateway-0, so only the telemetry differs
                log_path=self._log(name),
            )
            self._wait(name, f"127.0.0.1:{port}")

    def _wait(self, name: str, address: str) -> None:
        self.group.wait_until(name, lambda: port_open(address), 60)

    def _view_root(self, name: str, port: int) -> Path:
        """A SAX_ROOT whose cell's admin is the proxy port ``port``."""
        real = self.real_root / "sax" / CELL.rsplit("/", 1)[1]
        view = self.workdir / f"view-{name}"
        cell_dir = view / "sax" / real.name
        cell_dir.mkdir(parents=True)
        shutil.copy(real / "config.proto", cell_dir / "config.proto")
        location = admin_pb2.Location(location=f"127.0.0.1:{port}")
        (cell_dir / "location.proto").write_bytes(location.SerializeToString())
        return view

    async def _publish(self) -> None:
        async with Client(ClientSettings(sax_root=str(self.real_root))) as client:
            for model, overrides in MODELS.items():
                await client.publish(model, TEST_LM, "None", 1, overrides)
            for model in MODELS:
                await client.wait_for_ready(model, 1, timeout=60)
