"""The stack's token, required of every call but health checks (gateway/common/stacktoken.py).

Outermost of the server's interceptors: a call without the token reaches no other (no
telemetry, no access log line, no span, no request parsed), so that whatever a local caller
sends a gateway port directly costs one header compare. A refused call is UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from gateway.common.intercept import Handler
from gateway.common.stacktoken import REFUSED, STACK_TOKEN_HEADER

#: What the supervisor's probes and Envoy's health checks call: liveness holds without it.
EXEMPT_PREFIX = "/grpc.health.v1.Health/"


class StackTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, UNAUTHENTICATED, every call but health checks that lacks ``token``."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._refusals: dict[str, Handler] = {}

    def _carries_token(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == STACK_TOKEN_HEADER and isinstance(value, str):
                return hmac.compare_digest(value.encode(), self._token)
        return False

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]], call: Any
    ) -> Handler:
        method: str = call.method
        if method.startswith(EXEMPT_PREFIX) or self._carries_token(call.invocation_metadata):
            return await continuation(call)
        refusal = self._refusals.get(method)
        if refusal is None:
            handler = await continuation(call)
            if handler is None:  # no such method: grpc's UNIMPLEMENTED names nothing here
                return None
            refusal = self._refusals[method] = _refusal(handler)
        return refusal


async def _refuse(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSED)
    raise AssertionError("abort returns only by raising")


def _ignore(_data: bytes) -> None:
    """The request of a refused call is not parsed."""


def _refusal(handler: Handler) -> Handler:
    """A handler of ``handler``'s kind that refuses the call."""

    async def unary(_request: Any, context: Any) -> Any:
        await _refuse(context)

    async def streaming(_request: Any, context: Any) -> AsyncIterator[Any]:
        await _refuse(context)
        yield  # a generator, as grpc expects of a streaming handler

    options = {"request_deserializer": _ignore, "response_serializer": handler.response_serializer}
    if handler.request_streaming:
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(streaming, **options)
        return grpc.stream_unary_rpc_method_handler(unary, **options)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming, **options)
    return grpc.unary_unary_rpc_method_handler(unary, **options)
