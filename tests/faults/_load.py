"""A small closed-loop load over HTTP/JSON through Envoy, recording every call's outcome.

    result = asyncio.run(run_load(url, "/generate", body, seconds=3, concurrency=8))
    result.errors()   # {status: count} of the calls that did not answer 200

`during` runs a disruption (kill a process, restart one...) while the load is going on, and
`tick` is called every 0.2 s (the tests pass the stack supervisor's tick).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Call:
    started: float
    ended: float
    status: int
    body: str


@dataclass
class LoadResult:
    calls: list[Call] = field(default_factory=list)

    def errors(self) -> dict[int, int]:
        return dict(Counter(c.status for c in self.calls if c.status != 200))

    def error_samples(self) -> list[str]:
        return [f"{c.status} {c.body[:200]}" for c in self.calls if c.status != 200][:5]

    def rate(self, start: float, end: float) -> float:
        """Calls completed per second between two monotonic times."""
        done = sum(1 for c in self.calls if start <= c.ended < end and c.status == 200)
        return done / max(end - start, 1e-9)


async def run_load(
    base_url: str,
    path: str,
    body: Mapping[str, object],
    *,
    seconds: float,
    concurrency: int = 8,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
    tick: Callable[[], None] | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    result = LoadResult()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as http:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    response = await http.post(path, json=body)
                    status, text = response.status_code, response.text
                except httpx.HTTPError as exc:
                    status, text = 0, repr(exc)
                result.calls.append(Call(started, time.monotonic(), status, text))

        async def ticker() -> None:
            while time.monotonic() < stop_at + 1 and tick is not None:
                tick()
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        side = [asyncio.create_task(ticker())]
        if during is not None:
            side.append(asyncio.create_task(during()))
        await asyncio.gather(*tasks, *side)
    return result
