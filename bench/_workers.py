"""Scale-out on one host: the product path (HTTP/JSON through Envoy) with 1 and 2 gateway
processes, unpinned, as `saxgw up --workers N` runs them.

Both stacks front the bench's cell; every process of this phase, wrk included, may run on
every core (the cell too, as it always may be scheduled on its own core). Each stack's Envoy
has the worker threads `--envoy-concurrency auto` gives this machine. Rounds alternate the
two stacks; medians across rounds.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from typing import Any

from bench._loadgen import wrk
from bench._stack import PROMPT, UNARY_MODEL, BenchStack, pinned
from bench._unary import cpu_seconds
from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.tuning import plan_cores, usable_cores


def _stack(stack: BenchStack, workers: int, envoy_threads: int) -> Stack:
    return Stack(
        StackSettings(
            gateway=GatewaySettings(
                client=ClientSettings(sax_root=str(stack.real_root)), default_timeout=60.0
            ),
            gateway_ports=tuple(free_port() for _ in range(workers)),
            envoy=EnvoySettings(
                gateway_endpoints=(),
                listen_port=free_port(),
                admin_port=free_port(),
                concurrency=envoy_threads,
            ),
            log_dir=str(stack.logs / f"workers-{workers}"),
        )
    )


async def measure(
    stack: BenchStack,
    *,
    rounds: int,
    seconds: float,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    every = set(range(os.cpu_count() or 1))
    envoy_threads = plan_cores("auto", len(every)).envoy
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT})
    rps: dict[str, list[float]] = {"1": [], "2": []}
    cpu: dict[str, list[float]] = {"1": [], "2": []}
    loads: list[float] = []
    with pinned(every):
        stacks = {str(n): _stack(stack, n, envoy_threads) for n in (1, 2)}
        for n, s in stacks.items():
            (stack.logs / f"workers-{n}").mkdir(exist_ok=True)
            s.__enter__()
        try:
            for s in stacks.values():
                if not s.wait_healthy(60):
                    raise RuntimeError("a workers stack never became healthy")
                await wrk(f"{s.http_url}/generate", body, concurrency=concurrency, seconds=1)
            for r in range(rounds):
                for n in ["1", "2"] if r % 2 == 0 else ["2", "1"]:
                    s = stacks[n]
                    pids = [proc.pid for name, proc in s.group.children if name != "cell"]
                    before = sum(cpu_seconds(p) for p in pids)
                    sample = await wrk(
                        f"{s.http_url}/generate", body, concurrency=concurrency, seconds=seconds
                    )
                    used = sum(cpu_seconds(p) for p in pids) - before
                    rps[n].append(sample.rps)
                    cpu[n].append(used * 1e6 / max(sample.requests, 1))
                    loads.append(os.getloadavg()[0])
                    log(
                        f"round {r + 1} workers={n} {sample.rps:7.0f} req/s p50 "
                        f"{sample.p50_ms:6.2f} ms, gateways+Envoy {cpu[n][-1]:.0f} us CPU/req, "
                        f"load {loads[-1]:.1f}"
                        + (f" ERRORS {sample.errors}" if sample.errors else "")
                    )
        finally:
            for s in stacks.values():
                s.close()
    return {
        "cores": len(every),
        "usable_cores": usable_cores(),
        "envoy_concurrency": envoy_threads,
        "concurrency": concurrency,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "rps": {n: statistics.median(v) for n, v in rps.items()},
        "rps_samples": rps,
        "cpu_us_per_request": {n: statistics.median(v) for n, v in cpu.items()},
        "load_average": statistics.median(loads),
    }
