"""What a query cost, reported as upstream model servers do: trailing metadata
``query_cost_v0`` holding a decimal integer of accelerator milliseconds.

The stand-in models run on CPU, so their "accelerator" time is the wall time the model took,
at least 1 ms: plausible in size, and growing with a TestLM's ``delay_ms``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from gateway.common.rpc import Context

QUERY_COST_KEY = "query_cost_v0"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Self = TypeVar("_Self")


def _report(context: Context, started: float) -> None:
    cost_ms = max(1, round((time.perf_counter() - started) * 1000))
    context.set_trailing_metadata(((QUERY_COST_KEY, str(cost_ms)),))


def unary_cost(
    method: Callable[[_Self, _Req, Context], Awaitable[_Resp]],
) -> Callable[[_Self, _Req, Context], Awaitable[_Resp]]:
    """Decorates a unary data method: a successful call reports its cost."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: Context) -> _Resp:
        started = time.perf_counter()
        response = await method(self, request, context)
        _report(context, started)
        return response

    return wrapper


def stream_cost(
    method: Callable[[_Self, _Req, Context], AsyncGenerator[_Resp]],
) -> Callable[[_Self, _Req, Context], AsyncGenerator[_Resp]]:
    """Decorates a streaming data method: a stream that ends normally reports its cost."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: Context) -> AsyncGenerator[_Resp]:
        started = time.perf_counter()
        stream = method(self, request, context)
        try:
            async for item in stream:
                yield item
        finally:
            await stream.aclose()
        _report(context, started)

    return wrapper
