"""Many open streams: N concurrent SSE streams through Envoy, every token checked, memory read
while they are all open, and unary calls measured beside them.

The model emits ``MANY_TOKENS`` tokens, ``MANY_DELAY_MS`` apart, so a stream lives about
two minutes: long enough for every stream to be open at once even when opening 10,000 takes
tens of seconds, with a token rate (N / delay per second) that one front core can carry.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench._capacity import rss_mb
from bench._loadgen import wrk
from bench._sse import SseStream, open_stream
from bench._stack import MANY_MODEL, MANY_TEXT, PROMPT, UNARY_MODEL, BenchStack


def _text(stream: SseStream) -> tuple[int, str, int]:
    """HTTP status, the text the stream delivered, and its number of events."""
    result = stream.result()
    text = "".join(
        d.get("text", "") for event in result.events for d in event.data.get("deltas", [])
    )
    return result.status, text, len(result.events)


async def measure(
    stack: BenchStack, *, count: int, log: Callable[[str], None], batch: int = 250
) -> dict[str, Any]:
    """Opens ``count`` streams, waits for each one's first token, reads RSS and runs a short
    unary load while all are open, then waits for every stream to end by itself."""
    pids = {name: stack.pid(name) for name in ("gateway-0", "envoy")}
    before = {name: rss_mb(pid) for name, pid in pids.items()}
    host, port = stack.envoy.rsplit(":", 1)
    body = {"model": MANY_MODEL, "query": PROMPT}
    streams: list[SseStream] = []
    failed_to_connect = 0
    started = time.monotonic()
    try:
        for first in range(0, count, batch):
            opened = await asyncio.gather(
                *(
                    open_stream(host, int(port), "/generate_stream", body)
                    for _ in range(min(batch, count - first))
                ),
                return_exceptions=True,
            )
            for item in opened:
                if isinstance(item, BaseException):
                    failed_to_connect += 1
                else:
                    streams.append(item)
        connected_s = time.monotonic() - started
        log(f"{len(streams)} connections in {connected_s:.1f} s ({failed_to_connect} failed)")
        pending = {asyncio.ensure_future(s.got_data.wait()) for s in streams}
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            _, pending = await asyncio.wait(pending, timeout=5)
            live = sum(not s.closed.done() for s in streams)
            log(f"  {len(streams) - len(pending)} streaming, {live} open, load {_load():.1f}")
            if not live:
                break
        for task in pending:
            task.cancel()
        all_first_s = time.monotonic() - started
        open_at_peak = sum(s.got_data.is_set() and not s.closed.done() for s in streams)
        held = {name: rss_mb(pid) for name, pid in pids.items()}
        envoy_memory = _envoy_memory(stack)
        # Unary calls beside the open streams: the streams' circuit-breaker budget is their
        # own, so these must still be served.
        unary = await wrk(
            f"http://{stack.envoy}/generate",
            json.dumps({"model": UNARY_MODEL, "query": PROMPT}),
            concurrency=8,
            seconds=3,
        )
        held = {name: max(held[name], rss_mb(pid)) for name, pid in pids.items()}
        log(
            f"{open_at_peak} streams open at once after {all_first_s:.1f} s; gateway RSS "
            f"{held['gateway-0']:.0f} MB, Envoy {held['envoy']:.0f} MB; unary beside them "
            f"{unary.rps:.0f} req/s, {unary.errors} errors, p99 {unary.p99_ms:.1f} ms"
        )
        await asyncio.wait_for(
            asyncio.gather(*(s.closed for s in streams)), timeout=MANY_SECONDS_MAX
        )
    finally:
        for stream in streams:
            stream.close()
    results = [_text(s) for s in streams]
    ok = sum(status == 200 and text == MANY_TEXT for status, text, _ in results)
    refused = failed_to_connect + sum(status != 200 for status, _, _ in results)
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    failures = [s for s, (status, _, _) in zip(streams, results, strict=True) if status != 200]
    example = b"".join(d for _, d in failures[0].arrivals)[:600] if failures else b""
    out = {
        "failure_example": example.decode("latin-1"),
        "streams": count,
        "complete": ok,
        "refused": refused,
        "incomplete": len(results) - ok - (refused - failed_to_connect),
        "statuses": statuses,
        "open_at_once": open_at_peak,
        "seconds_to_connect": connected_s,
        "seconds_to_all_streaming": all_first_s,
        "rss_before_mb": before,
        "rss_with_streams_mb": held,
        "kb_per_stream": {
            name: (held[name] - before[name]) * 1000 / max(count, 1) for name in held
        },
        "unary_beside": unary.as_dict(),
        "envoy_memory_mb": envoy_memory,
        "load_average": _load(),
        "open_files_limit": _open_files_limit(),
    }
    log(
        f"{count} streams: {ok} complete, {refused} refused, {out['incomplete']} incomplete "
        f"(statuses {statuses})"
    )
    return out


MANY_SECONDS_MAX = 300.0


def _envoy_memory(stack: BenchStack) -> dict[str, float]:
    """Envoy's own account (admin /memory): allocated by Envoy vs held by its allocator."""
    with urllib.request.urlopen(stack.envoy_admin + "/memory", timeout=5) as response:
        memory = json.loads(response.read())
    return {k: int(v) / 1e6 for k, v in memory.items() if str(v).isdigit()}


def _load() -> float:
    return os.getloadavg()[0]


def _open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
