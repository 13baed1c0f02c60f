"""Capacity: gateway memory with 1,000 open SSE streams, and RSS over 100,000 unary requests."""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._loadgen import h2load
from bench._sse import SseStream, open_stream
from bench._stack import HOLD_MODEL, PROMPT, UNARY_MODEL, BenchStack


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` (VmRSS), in MB (10^6 bytes, as the targets are)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def open_streams(
    stack: BenchStack, *, count: int, log: Callable[[str], None], batch: int = 100
) -> dict[str, Any]:
    """Opens ``count`` SSE streams of a slow model through Envoy, waits until every one has
    delivered a token, reads RSS, then drops them all."""
    gateway, envoy = stack.pid("gateway-0"), stack.pid("envoy")
    before = {"gateway": rss_mb(gateway), "envoy": rss_mb(envoy)}
    host, port = stack.envoy.rsplit(":", 1)
    body = {"model": HOLD_MODEL, "query": PROMPT}
    streams: list[SseStream] = []
    try:
        for _ in range(0, count, batch):
            streams += await asyncio.gather(
                *(open_stream(host, int(port), "/generate_stream", body) for _ in range(batch))
            )
        await asyncio.wait_for(asyncio.gather(*(s.got_data.wait() for s in streams)), 60)
        live = sum(not s.closed.done() for s in streams)
        held = []
        for _ in range(3):  # a few readings while every stream is open and ticking
            held.append({"gateway": rss_mb(gateway), "envoy": rss_mb(envoy)})
            await asyncio.sleep(1.0)
        still_live = sum(not s.closed.done() for s in streams)
    finally:
        for stream in streams:
            stream.close()
    await asyncio.sleep(3.0)
    after = {"gateway": rss_mb(gateway), "envoy": rss_mb(envoy)}
    peak = {k: max(h[k] for h in held) for k in before}
    result = {
        "streams": count,
        "open_when_measured": min(live, still_live),
        "rss_before_mb": before,
        "rss_with_streams_mb": peak,
        "rss_after_close_mb": after,
        "gateway_kb_per_stream": (peak["gateway"] - before["gateway"]) * 1000 / count,
    }
    log(
        f"{count} streams: gateway RSS {before['gateway']:.1f} -> {peak['gateway']:.1f} MB "
        f"({result['gateway_kb_per_stream']:.1f} KB/stream), envoy {peak['envoy']:.1f} MB, "
        f"{result['open_when_measured']} open"
    )
    return result


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
