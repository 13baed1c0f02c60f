"""Streaming: token delivery lag and time to first byte, per path.

The model server (bench._stamped_modelserver) writes ``@<time.time_ns()>`` into every token
as the model yields it; each client subtracts that from its own clock when the token arrives.
Both clocks are this machine's CLOCK_REALTIME, so the lag needs no assumed schedule. It
includes the model server's own send, which the direct path shows alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc
from saxml.protobuf import lm_pb2, lm_pb2_grpc

from bench._direct_envoy import STREAM_ROUTE as DIRECT_STREAM_ROUTE
from bench._loadgen import percentile
from bench._sse import open_stream
from bench._stack import PROMPT, STREAM_DELAY_MS, STREAM_MODEL, STREAM_TOKENS, BenchStack

_STAMP = re.compile(r"@(\d+)")

PATHS = {
    "direct-grpc": "grpc.aio client -> model server",
    "gateway-grpc": "grpc.aio client -> gateway (no Envoy)",
    "envoy-sse": "HTTP/1.1 SSE client -> Envoy -> gateway (the product path)",
    "envoy-direct-sse": "HTTP/1.1 SSE client -> Envoy -> model server, no gateway: design "
    "(b)'s ceiling (bench/_direct_envoy.py)",
}


class Trace:
    """What one stream delivered: lags of its tokens, and its first byte / first token."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.first_byte_ms = float("nan")
        self.first_token_ms = float("nan")
        self.tokens = 0

    def token(self, text: str, arrived_ns: int, sent_ns: int) -> None:
        for stamp in _STAMP.findall(text):
            self.lags_ms.append((arrived_ns - int(stamp)) / 1e6)
            if not self.tokens:
                self.first_token_ms = (arrived_ns - sent_ns) / 1e6
            self.tokens += 1


StreamFn = Callable[[], Awaitable[Trace]]


async def sse(address: str, path: str, body: dict[str, str], tokens: str) -> Trace:
    """One SSE stream; ``tokens`` names the list of each event's messages that carry a
    token's ``text`` (``deltas`` in the gateway's API, ``items`` in Sax's). A stream that
    ends with an in-band error fails, as one that does not answer 200 does."""
    host, port = address.rsplit(":", 1)
    stream = await open_stream(host, int(port), path, body)
    await asyncio.wait_for(stream.closed, 30)
    result = stream.result()
    if result.status != 200:
        raise RuntimeError(f"{path} answered HTTP {result.status}")
    trace = Trace()
    trace.first_byte_ms = (result.first_byte_ns - result.sent_ns) / 1e6
    for event in result.events:
        if "error" in event.data:
            raise RuntimeError(f"{path}: the stream failed: {event.data}")
        for token in event.data.get(tokens, []):
            trace.token(token.get("text", ""), event.arrived_ns, result.sent_ns)
    return trace


def stream_functions(stack: BenchStack, direct: Any, gateway: Any) -> dict[str, StreamFn]:
    async def direct_stream() -> Trace:
        trace, sent = Trace(), time.time_ns()
        request = lm_pb2.GenerateRequest(model_key=STREAM_MODEL, text=PROMPT)
        async for response in direct.GenerateStream(request, timeout=30):
            now = time.time_ns()
            if trace.first_byte_ms != trace.first_byte_ms:  # NaN: the first message
                trace.first_byte_ms = (now - sent) / 1e6
            for item in response.items:
                trace.token(item.text, now, sent)
        return trace

    async def gateway_stream() -> Trace:
        trace, sent = Trace(), time.time_ns()
        request = gateway_pb2.GenerateStreamRequest(model=STREAM_MODEL, query=PROMPT)
        async for response in gateway.GenerateStream(request, timeout=30):
            now = time.time_ns()
            if trace.first_byte_ms != trace.first_byte_ms:
                trace.first_byte_ms = (now - sent) / 1e6
            for delta in response.deltas:
                trace.token(delta.text, now, sent)
        return trace

    def sse_stream() -> Awaitable[Trace]:
        body = {"model": STREAM_MODEL, "query": PROMPT}
        return sse(stack.envoy, "/generate_stream", body, "deltas")

    def direct_sse_stream() -> Awaitable[Trace]:
        body = {"model_key": STREAM_MODEL, "text": PROMPT}
        return sse(stack.direct_envoy, DIRECT_STREAM_ROUTE, body, "items")

    return {
        "direct-grpc": direct_stream,
        "gateway-grpc": gateway_stream,
        "envoy-sse": sse_stream,
        "envoy-direct-sse": direct_sse_stream,
    }


def _summary(traces: list[Trace]) -> dict[str, Any]:
    lags = [lag for t in traces for lag in t.lags_ms]
    first_bytes = [t.first_byte_ms for t in traces]
    first_tokens = [t.first_token_ms for t in traces]
    return {
        "streams": len(traces),
        "tokens": len(lags),
        "complete_streams": sum(t.tokens == STREAM_TOKENS for t in traces),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags, default=float("nan")),
        "first_byte_p50_ms": percentile(first_bytes, 50),
        "first_byte_p99_ms": percentile(first_bytes, 99),
        "first_token_p50_ms": percentile(first_tokens, 50),
        "first_token_p99_ms": percentile(first_tokens, 99),
    }


async def measure(
    stack: BenchStack,
    *,
    rounds: int,
    sequential: int,
    concurrent: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Per round and path: ``sequential`` streams one after another (c=1), then
    ``concurrent`` streams at once (c=concurrent)."""
    async with (
        grpc.aio.insecure_channel(stack.model_server) as direct_channel,
        grpc.aio.insecure_channel(stack.gateway) as gateway_channel,
    ):
        run = stream_functions(
            stack,
            lm_pb2_grpc.LMServiceStub(direct_channel),
            gateway_pb2_grpc.SaxGatewayStub(gateway_channel),
        )
        for fn in run.values():  # warm-up
            await fn()
        traces: dict[str, dict[str, list[Trace]]] = {p: {"1": [], str(concurrent): []} for p in run}
        names = list(run)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                for _ in range(sequential):
                    traces[name]["1"].append(await run[name]())
            for name in order:
                batch = await asyncio.gather(*(run[name]() for _ in range(concurrent)))
                traces[name][str(concurrent)].extend(batch)
        summary = {
            name: {c: _summary(ts) for c, ts in by_c.items()} for name, by_c in traces.items()
        }
    for name, by_c in summary.items():
        for c, s in by_c.items():
            log(
                f"stream {name:<13} c={c:<3} lag p50 {s['lag_p50_ms']:.3f} ms "
                f"p99 {s['lag_p99_ms']:.3f} ms; first byte p50 {s['first_byte_p50_ms']:.2f} ms"
            )
    return {
        "paths": PATHS,
        "tokens_per_stream": STREAM_TOKENS,
        "delay_ms_per_token": STREAM_DELAY_MS,
        "summary": summary,
        "load_average": os.getloadavg()[0],
    }
