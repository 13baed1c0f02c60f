"""Unary generate, zero-delay model: throughput and latency of each path, interleaved.

Each round runs every path at each concurrency for the same duration, in an order rotated
per round, so that drift (thermal, caches, a background GC) spreads over all paths instead of
landing on one. The figures are medians across rounds.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from saxgateway.v1 import gateway_pb2
from saxml.protobuf import lm_pb2, lm_pb2_grpc

from bench._direct_envoy import ROUTE as DIRECT_ROUTE
from bench._full_envoy import KEYS as FULL_KEYS
from bench._loadgen import Sample, aio_unary, grpc_frame, h2load, median_sample, wrk
from bench._stack import PROMPT, UNARY_MODEL, BenchStack

LM_GENERATE = "/sax.server.lm.LMService/Generate"
GATEWAY_GENERATE = "/saxgateway.v1.SaxGateway/Generate"

#: Path name -> what it measures; the first two are the limit (no gateway).
PATHS = {
    "direct-aio": "the limit: grpc.aio client -> model server",
    "direct-h2load": "the limit: h2load (gRPC) -> model server",
    "floor-grpc": "h2load (gRPC) -> the least grpc.aio hop (bench/_floor_proxy.py): the floor",
    "gateway-grpc": "h2load (gRPC) -> gateway (no Envoy)",
    "gateway-grpc-ee": "as gateway-grpc, grpcio's defaults (EventEngine client/listener on)",
    "gateway-grpc-nometrics": "as gateway-grpc (metrics on, the default), metrics off",
    "gateway-grpc-costheader": "as gateway-grpc-nometrics, the cost a header the gateway sends "
    "itself (`--cost-header`)",
    "gateway-grpc-asyncio": "as gateway-grpc, on asyncio's event loop (the default is uvloop)",
    "gateway-grpc-tracing": "as gateway-grpc, tracing on (every call exported over OTLP)",
    "envoy-grpc": "h2load (gRPC) -> Envoy -> gateway",
    "envoy-http": "wrk (HTTP/1.1 JSON) -> Envoy -> gateway (the product path)",
    "envoy-direct-http": "wrk (HTTP/1.1 JSON) -> Envoy -> model server, no gateway: design "
    "(b)'s ceiling (bench/_direct_envoy.py)",
    "envoy-direct-full": "as envoy-direct-http, with what (b) needs: the product's listener "
    "with API keys, per-model routes, RBAC, clusters from files (bench/_full_envoy.py)",
    "envoy-direct-product": "as envoy-direct-full, the product's own direct mode "
    "(`direct: {generate: true}`, gateway/launch/direct/; bench/_product_direct.py)",
    "baseline-http": "wrk (HTTP/1.1 JSON) -> seed-style FastAPI + sync facade",
}

#: The Python hops (the gateways and the floor): a path's "gateway" CPU is theirs added up
#: (only one serves it).
GATEWAYS = (
    "floor",
    "gateway-0",
    "gateway-ee",
    "gateway-nometrics",
    "gateway-costheader",
    "gateway-asyncio",
    "gateway-tracing",
)
#: Processes whose CPU time is read around every run (per request: user + system).
PROCESSES = (
    *GATEWAYS,
    "envoy",
    "envoy-direct",
    "envoy-direct-full",
    "envoy-direct-product",
    "modelserver",
    "baseline",
)

Runner = Callable[[int, float], Awaitable[Sample]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK")


def runners(stack: BenchStack, channel: grpc.aio.Channel | None) -> dict[str, Runner]:
    """One coroutine function per path: ``run(concurrency, seconds)``; ``channel`` (to the
    model server) is needed by the grpc.aio path only."""
    stub = lm_pb2_grpc.LMServiceStub(channel) if channel is not None else None
    direct = lm_pb2.GenerateRequest(model_key=UNARY_MODEL, text=PROMPT)
    direct_frame = grpc_frame(direct.SerializeToString())
    gateway_frame = grpc_frame(
        gateway_pb2.GenerateRequest(model=UNARY_MODEL, query=PROMPT).SerializeToString()
    )
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT})
    # Sax's own GenerateRequest as JSON: the direct Envoy transcodes onto LMService.Generate.
    direct_body = json.dumps({"model_key": UNARY_MODEL, "text": PROMPT})

    def call() -> Awaitable[Any]:
        assert stub is not None
        return stub.Generate(direct, timeout=10)

    def grpc_path(url: str, frame: bytes) -> Runner:
        return lambda c, s: h2load(url, frame, concurrency=c, seconds=s, min_response_bytes=10)

    def http_path(url: str, payload: str = body, headers: tuple[str, ...] = ()) -> Runner:
        return lambda c, s: wrk(url, payload, concurrency=c, seconds=s, headers=headers)

    return {
        "direct-aio": lambda c, s: aio_unary(call, concurrency=c, seconds=s),
        "direct-h2load": grpc_path(f"http://{stack.model_server}{LM_GENERATE}", direct_frame),
        "floor-grpc": grpc_path(f"http://{stack.floor}{GATEWAY_GENERATE}", gateway_frame),
        "gateway-grpc": grpc_path(f"http://{stack.gateway}{GATEWAY_GENERATE}", gateway_frame),
        "gateway-grpc-ee": grpc_path(f"http://{stack.gateway_ee}{GATEWAY_GENERATE}", gateway_frame),
        "gateway-grpc-nometrics": grpc_path(
            f"http://{stack.gateway_nometrics}{GATEWAY_GENERATE}", gateway_frame
        ),
        "gateway-grpc-costheader": grpc_path(
            f"http://{stack.gateway_costheader}{GATEWAY_GENERATE}", gateway_frame
        ),
        "gateway-grpc-asyncio": grpc_path(
            f"http://{stack.gateway_asyncio}{GATEWAY_GENERATE}", gateway_frame
        ),
        "gateway-grpc-tracing": grpc_path(
            f"http://{stack.gateway_tracing}{GATEWAY_GENERATE}", gateway_frame
        ),
        "envoy-grpc": grpc_path(f"http://{stack.envoy}{GATEWAY_GENERATE}", gateway_frame),
        "envoy-http": http_path(f"http://{stack.envoy}/generate"),
        "envoy-direct-http": http_path(f"http://{stack.direct_envoy}{DIRECT_ROUTE}", direct_body),
        "envoy-direct-full": http_path(
            f"http://{stack.full_envoy}/generate", body, (f"x-api-key: {FULL_KEYS['bench']}",)
        ),
        "envoy-direct-product": http_path(
            f"http://{stack.product_direct}/generate", body, (f"x-api-key: {FULL_KEYS['bench']}",)
        ),
        "baseline-http": http_path(f"http://127.0.0.1:{stack.baseline_port}/generate"),
    }


async def measure(
    stack: BenchStack,
    *,
    rounds: int,
    seconds: float,
    concurrencies: tuple[int, ...],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Runs the interleaved matrix; returns per-round samples and per-path medians."""
    async with grpc.aio.insecure_channel(stack.model_server) as channel:
        run = runners(stack, channel)
        for runner in run.values():  # warm every path (connections, caches) first
            await runner(16, 1.0)
        samples: dict[str, dict[int, list[Sample]]] = {
            p: {c: [] for c in concurrencies} for p in run
        }
        cpu: dict[str, dict[int, list[dict[str, float]]]] = {
            p: {c: [] for c in concurrencies} for p in run
        }
        loads: dict[str, dict[int, list[float]]] = {p: {c: [] for c in concurrencies} for p in run}
        pids = {p: stack.pid(p) for p in PROCESSES}
        names = list(run)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for c in concurrencies:
                for name in order:
                    before = {p: cpu_seconds(pid) for p, pid in pids.items()}
                    sample = await run[name](c, seconds)
                    after = {p: cpu_seconds(pid) for p, pid in pids.items()}
                    samples[name][c].append(sample)
                    cpu[name][c].append(
                        {p: (after[p] - before[p]) * 1e6 / max(sample.requests, 1) for p in pids}
                    )
                    loads[name][c].append(os.getloadavg()[0])
                    log(
                        f"round {r + 1} c={c:<3} {name:<14} {sample.rps:8.0f} req/s "
                        f"p50 {sample.p50_ms:6.2f} ms p99 {sample.p99_ms:6.2f} ms "
                        f"load {loads[name][c][-1]:.1f}"
                        + (f"  ERRORS {sample.errors}" if sample.errors else "")
                    )
    return {
        "paths": PATHS,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "median": {
            name: {str(c): median_sample(by_c[c]) for c in concurrencies}
            for name, by_c in samples.items()
        },
        "cpu_us_per_request": {
            name: {
                str(c): {p: statistics.median(d[p] for d in by_c[c]) for p in PROCESSES}
                for c in concurrencies
            }
            for name, by_c in cpu.items()
        },
        "load_average": {
            name: {str(c): statistics.median(by_c[c]) for c in concurrencies}
            for name, by_c in loads.items()
        },
        "samples": {
            name: {str(c): [s.as_dict() for s in by_c[c]] for c in concurrencies}
            for name, by_c in samples.items()
        },
    }
