"""Every call gets a status, even one whose request stream ends without its message.

grpc.aio never runs a unary-request handler whose request stream ends before one whole
message (a grpc-web POST with an empty body, a frame cut short, a gRPC client that half-closes
at once), and sends no status either: the call stays open until the caller's deadline, for
ever without one (measured with grpcio 1.85 on the gateway's port and through Envoy).
`RequestMessageInterceptor` serves those methods through stream-request handlers instead,
which read the one message themselves and answer INVALID_ARGUMENT when there is none. On the
wire nothing changes: a unary request is a stream of one message to gRPC over HTTP/2.

The gateway and the embedded cell's servers both serve through it; each ends the call with
its own error reporting (``refuse``), or, in the gateway, hands the error inward as the call's
request (``inward``), for its telemetry to count and time the call like any other refused
one (a grpc-web POST with an empty body was the gateway's INVALID_ARGUMENT in Envoy's access
log, and in none of its metrics or spans). The cell's also refuses a message that does not parse
(INVALID_ARGUMENT): grpc.aio answered UNKNOWN "Unexpected <class DecodeError>" and logged a
traceback at ERROR for each. The gateway does that in its ErrorInterceptor instead, in the
error shape of each of its services.

Outermost, it also unhooks the handling of a call that was refused or whose caller left from
what outlives the call (`_released`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.common.errors import InvalidArgumentError, SaxError
from gateway.common.intercept import Handler, Streaming, Unary, WrappingInterceptor
from gateway.common.rpc import Context

NO_MESSAGE = "the call carries no complete request message: a gRPC call sends exactly one"


#: Ends a call with the status that reports a SaxError (raises, as ``context.abort`` does).
Refuse = Callable[[Context, SaxError], Awaitable[Any]]
#: What an inner interceptor takes as the request of a call refused with this SaxError.
Inward = Callable[[SaxError], Any]


class _Unparsed:
    """Stands in for request bytes that did not parse (`_tolerant`)."""

    __slots__ = ("error",)

    def __init__(self, error: DecodeError) -> None:
        self.error = error


def _tolerant(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if parse is None:
        return None

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return _Unparsed(exc)

    return tolerant


#: How a call's handling ends when it is refused (an abort) or its caller leaves (grpc cancels
#: the handler): `_released` unhooks both.
_ENDINGS = (grpc.aio.AbortError, asyncio.CancelledError)


def _released(ending: BaseException) -> None:
    """Drops the tracebacks of a call's ending and of every error chained to it (its cause
    and context, theirs in turn): each holds the frames of the handling, with their locals,
    the request among them. grpc.aio keeps an abort's exception in the call's state, which a
    frame of its traceback refers to; an exception raised again from a frame that keeps it in
    a local (``raise error``, a caller's cancellation passed on) refers to itself the same
    way. Such cycles are freed by the garbage collector's passes alone: each call refused, or
    left by its caller, kept its request (the message, and a field read from it) until a full
    pass, and 40 calls with a 24 MiB query, each refused, took a gateway from 58 to 909 MB
    resident (BENCHMARKS.md, run 38). The call is over: nothing reads these any more."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [ending]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        pending += (exc.__cause__, exc.__context__)
        exc.__traceback__ = None


class RequestMessageInterceptor(WrappingInterceptor):
    """Serves every unary-request method as a stream-request one that reads its message.
    Outermost, so that the other interceptors wrap the unary handlers as they always have."""

    def __init__(
        self,
        refuse: Refuse,
        *,
        refuse_unparsed: bool = False,
        out_of_memory: Callable[[], SaxError] | None = None,
        inward: Inward | None = None,
    ) -> None:
        """``out_of_memory``: the error of a call whose request the process had no memory to
        read (else grpc.aio's UNKNOWN ``Unexpected <class 'MemoryError'>``, with a traceback
        logged at ERROR for each such call). ``inward``: a call with no request (or none it
        could read) goes on with ``inward(error)`` as its request, for the inner
        interceptors to answer, rather than being refused here."""
        super().__init__()
        self._refuse = refuse
        self._inward = inward
        self._parse = _tolerant if refuse_unparsed else lambda parse: parse
        self._out_of_memory = out_of_memory

    async def _one(self, context: Context) -> Any:
        """The call's request; ends the call with INVALID_ARGUMENT if it sent none, or (with
        ``refuse_unparsed``) one that does not parse."""
        try:
            request = await context.read()
        except MemoryError:  # grpc's copy of the request's bytes
            if self._out_of_memory is None:
                raise
            return await self._refused(context, self._out_of_memory())
        if request is grpc.aio.EOF:
            return await self._refused(context, InvalidArgumentError(NO_MESSAGE))
        if type(request) is _Unparsed:
            error = InvalidArgumentError(f"the request does not parse: {request.error}")
            return await self._refused(context, error)
        return request

    async def _refused(self, context: Context, error: SaxError) -> Any:
        """Refuses the call, or hands ``error`` inward as its request (``inward``)."""
        if self._inward is not None:
            return self._inward(error)
        return await self._refuse(context, error)

    def _unary(self, behavior: Unary) -> Callable[[Any, Context], Awaitable[Any]]:
        one = self._one

        async def call(requests: Any, context: Context) -> Any:
            try:
                return await behavior(await one(context), context)
            except _ENDINGS as exc:
                _released(exc)
                raise

        return call

    def _streaming(self, behavior: Streaming) -> Callable[[Any, Context], Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with context.write() (grpcio-health-checking's Watch).
            return self._unary(behavior)  # type: ignore[arg-type]
        one = self._one

        async def call(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                responses = behavior(await one(context), context)
                try:
                    async for response in responses:
                        yield response
                finally:
                    # Closed with this one (a caller that went away), not when collected; by
                    # hand, since an aclosing() would live as long as the stream (0.1 KB each).
                    await responses.aclose()
            except _ENDINGS as exc:  # refused or left, before its first response or after
                _released(exc)
                raise

        return call

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        if handler.request_streaming:
            return handler
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.unary_unary),
                request_deserializer=self._parse(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.unary_stream),
            request_deserializer=self._parse(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
