"""What the server interceptors of the gateway and the cell share: each wraps the handlers of
the unary and server-streaming methods it serves (and, if it asks, the others), once per
method, and reuses them.

Interceptors run on every call, and rebuilding a handler each time would be measurable on the
hot path. A subclass names the methods it wraps (``prefixes`` of their paths) and says how
(``wrap_unary``, ``wrap_streaming``, optionally ``deserializer``, or the whole handler with
``wrap_handler``); any other handler passes through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Handler = Any  # grpc.RpcMethodHandler; its stub types sync behaviours only
Unary = Callable[[Any, Any], Awaitable[Any]]
Streaming = Callable[[Any, Any], AsyncIterator[Any]]
Deserializer = Callable[[bytes], Any]


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handlers of the methods whose paths start with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...] = ("/",)) -> None:
        self._prefixes = prefixes
        self._cache: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(self._prefixes):
            return handler
        wrapped = self.wrap_handler(method, handler)
        self._cache[method] = wrapped
        return wrapped

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        """The handler served for ``method`` instead of ``handler``; one whose requests
        stream (server reflection) passes unchanged."""
        if handler.request_streaming:
            return handler
        deserializer = self.deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_stream_rpc_method_handler(
            self.wrap_streaming(method, handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )

    def deserializer(self, parse: Deserializer) -> Deserializer:
        """The request parser of a wrapped handler; the method's own by default."""
        return parse

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        """The unary behaviour served for ``method`` (its full path) instead of ``behavior``."""
        raise NotImplementedError

    def wrap_streaming(self, method: str, behavior: Streaming) -> Streaming:
        """The server-streaming behaviour served for ``method`` instead of ``behavior``."""
        raise NotImplementedError
