"""Capacity: the gateway's RSS over many unary requests (open streams: bench/_many_streams.py)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._loadgen import h2load
from bench._stack import PROMPT, UNARY_MODEL, BenchStack


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` (VmRSS), in MB (10^6 bytes, as the targets are)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def rss_growth(
    stack: BenchStack,
    *,
    total: int,
    step: int,
    concurrency: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Sends ``total`` unary requests through Envoy (HTTP/JSON) in steps of ``step``; reads
    the gateway's RSS before and after each step; fits a line through the readings."""
    gateway = stack.pid("gateway-0")
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT}).encode()
    url = f"http://{stack.envoy}/generate"
    readings = [{"requests": 0, "rss_mb": rss_mb(gateway)}]
    errors = 0
    for done in range(step, total + 1, step):
        sample = await h2load(url, body, concurrency=concurrency, count=step, http1=True)
        errors += sample.errors
        readings.append({"requests": done, "rss_mb": rss_mb(gateway)})
        log(f"rss after {done:>7} requests: {readings[-1]['rss_mb']:.2f} MB")
    xs = [r["requests"] / 1e5 for r in readings[1:]]  # the first step warms the allocator
    ys = [r["rss_mb"] for r in readings[1:]]
    slope = statistics.linear_regression(xs, ys).slope if len(xs) > 1 else 0.0
    return {
        "requests": total,
        "errors": errors,
        "readings": readings,
        "slope_mb_per_100k": slope,
        "growth_first_to_last_mb": readings[-1]["rss_mb"] - readings[1]["rss_mb"],
    }
