"""What a query cost, reported as upstream model servers do: trailing metadata
``query_cost_v0`` holding a decimal integer of accelerator milliseconds.

The stand-in models run on CPU, so their "accelerator" time is the wall time the model took,
at least 1 ms: plausible in size, and growing with a TestLM's ``delay_ms``.
"""

from __future__ import annotations

import time

from gateway.common.rpc import Context

QUERY_COST_KEY = "query_cost_v0"


def report_cost(context: Context, started: float) -> None:
    """Sets the call's cost: the time since ``started`` (``time.perf_counter()``), in ms."""
    cost_ms = max(1, round((time.perf_counter() - started) * 1000))
    context.set_trailing_metadata(((QUERY_COST_KEY, str(cost_ms)),))
