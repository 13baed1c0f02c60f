"""Discovery cost: admin RPCs per 1,000 generate calls in steady state, counted at the admin.

The gateway and a second instance of the baseline find "their" admin at a port of the
counting proxy (see `_stack`), so every admin RPC they make, background ones included, is
counted by method whatever its cause.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bench._admin_proxy import counts
from bench._loadgen import h2load
from bench._stack import PROMPT, UNARY_MODEL, BenchStack


async def measure(stack: BenchStack, *, calls: int, log: Callable[[str], None]) -> dict[str, Any]:
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT}).encode()
    targets = {
        "gateway": (f"http://{stack.envoy}/generate", stack.proxy_ports["gateway"]),
        "baseline": (
            f"http://127.0.0.1:{stack.counted_baseline_port}/generate",
            stack.proxy_ports["baseline"],
        ),
    }
    result: dict[str, Any] = {}
    for name, (url, port) in targets.items():
        await h2load(url, body, concurrency=16, count=max(calls // 10, 100), http1=True)  # warm
        before = (await counts(stack.proxy)).get(str(port), {})
        started = time.monotonic()
        sample = await h2load(url, body, concurrency=16, count=calls, http1=True)
        seconds = time.monotonic() - started
        after = (await counts(stack.proxy)).get(str(port), {})
        by_method = {m: after[m] - before.get(m, 0) for m in after if after[m] != before.get(m, 0)}
        total = sum(by_method.values())
        result[name] = {
            "calls": calls,
            "errors": sample.errors,
            "seconds": seconds,
            "admin_rpcs": total,
            "admin_rpcs_per_1000_calls": total * 1000 / calls,
            "by_method": by_method,
        }
        log(f"discovery {name:<9} {total} admin RPCs for {calls} calls {by_method}")
    return result
