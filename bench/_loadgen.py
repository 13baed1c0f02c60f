"""Load generators: wrk (HTTP/1.1), h2load (gRPC over h2c, or fixed counts over HTTP/1.1) and
a grpc.aio client, each returning one `Sample`.

Concurrency means in-flight requests: wrk and ``h2load --h1`` open that many connections;
gRPC clients keep that many concurrent streams on one connection, as a gRPC channel does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

LUA = Path(__file__).with_name("post.lua")


@dataclass(frozen=True)
class Sample:
    """One timed run: throughput and latency percentiles (milliseconds)."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return out.decode()


async def wrk(
    url: str,
    body: str,
    *,
    concurrency: int,
    seconds: float,
    headers: tuple[str, ...] = (),
) -> Sample:
    """POSTs ``body`` (JSON) to ``url`` with wrk for ``seconds``; ``headers``: "name: value"."""
    out = await _run(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--timeout=10s",
        *(f"--header={h}" for h in headers),
        f"--script={LUA}",
        url,
        env={"WRK_BODY": body},
    )
    summary = _json_line(out)
    secs = summary["duration_us"] / 1e6
    return Sample(
        requests=summary["requests"],
        errors=summary["errors"] + summary["non_2xx"],
        seconds=secs,
        rps=summary["requests"] / secs,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
    )


def _json_line(out: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"no summary in wrk's output:\n{out}")


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\0" + struct.pack(">I", len(message)) + message


_H2LOAD_DONE = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded")
_H2LOAD_DATA = re.compile(r"traffic: .*\((\d+)\) data")


async def h2load(
    url: str,
    data: bytes,
    *,
    concurrency: int,
    seconds: float | None = None,
    count: int | None = None,
    http1: bool = False,
    warmup: float = 0.5,
    min_response_bytes: int = 1,
    rps: float | None = None,
    headers: tuple[str, ...] = (),
) -> Sample:
    """Sends ``data`` to ``url`` (gRPC over h2c, or JSON over HTTP/1.1 with ``http1``) for
    ``seconds`` or ``count`` requests. gRPC errors arrive with HTTP 200, so a run whose
    responses average fewer than ``min_response_bytes`` of data counts them all as errors.
    ``rps``: each connection sends at most this many requests a second (an open loop);
    ``headers``: more "name: value" headers."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body, log = Path(tmp) / "body", Path(tmp) / "log"
        body.write_bytes(data)
        argv = ["h2load", "-t1", f"--data={body}", f"--log-file={log}"]
        if http1:
            argv += ["--h1", f"-c{concurrency}", "-m1", "-H", "content-type: application/json"]
        else:
            argv += [
                "-c1",
                f"-m{concurrency}",
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
            ]
        argv += [f"--header={h}" for h in headers]
        if rps is not None:
            argv += [f"--rps={rps:g}"]
        if count is not None:
            argv += [f"-n{count}"]
        else:
            assert seconds is not None, "h2load needs seconds or count"
            argv += [f"-D{seconds * 1000:.0f}ms", f"--warm-up-time={warmup * 1000:.0f}ms"]
        started = time.monotonic()
        out = await _run(*argv, url)
        elapsed = time.monotonic() - started
        latencies = [
            int(fields[2]) / 1000
            for fields in (line.split("\t") for line in log.read_text().splitlines())
            if len(fields) == 3 and fields[1].startswith("2")
        ]
    done = _H2LOAD_DONE.search(out)
    traffic = _H2LOAD_DATA.search(out)
    if done is None or traffic is None:
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    total, ok = int(done.group(2)), int(done.group(3))
    if ok and int(traffic.group(1)) < ok * min_response_bytes:
        ok = 0
    secs = seconds if seconds is not None else elapsed
    return Sample(
        requests=total,
        errors=total - ok,
        seconds=secs,
        rps=len(latencies) / secs if seconds is not None else total / secs,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


async def aio_unary(
    call: Callable[[], Awaitable[Any]], *, concurrency: int, seconds: float, warmup: float = 0.5
) -> Sample:
    """Runs ``call`` from ``concurrency`` tasks for ``warmup`` + ``seconds``; only calls that
    start after the warm-up count."""
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    end = start + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while loop.time() < end:
            counted = loop.time() >= start
            begin = time.perf_counter()
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += counted
                continue
            if counted:
                latencies.append((time.perf_counter() - begin) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Sample(
        requests=len(latencies) + errors,
        errors=errors,
        seconds=seconds,
        rps=len(latencies) / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def median_sample(samples: list[Sample]) -> dict[str, float]:
    """Medians across rounds of each metric."""
    return {
        "rps": statistics.median(s.rps for s in samples),
        "p50_ms": statistics.median(s.p50_ms for s in samples),
        "p99_ms": statistics.median(s.p99_ms for s in samples),
        "errors": sum(s.errors for s in samples),
        "requests": sum(s.requests for s in samples),
    }
