"""The one place where domain errors become gRPC statuses on the way out of the gateway.

A `SaxError` carries its canonical code; INVALID_ARGUMENT errors may name the fields at fault,
which travel as a ``google.rpc.BadRequest`` in ``grpc-status-details-bin`` so that Envoy can
print them in the JSON error body. Anything else that escapes a servicer is a bug: it is
logged and reported as INTERNAL without leaking its text.

A status travels in headers (``grpc-message``, ``grpc-status-details-bin``; the OpenAI face's
``x-openai-error`` too), and a header block over Envoy's limit (60 KiB) makes Envoy reset the
whole HTTP/2 connection to the gateway: the caller got a 502 or 503 instead of its 400, and
every other call on that connection died with it. So every text here is cut (`clip`) to a
size in bytes as any of those headers spells it, whatever it echoes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from gateway.client import (
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    SaxError,
    UnavailableError,
    UnimplementedError,
)
from gateway.common.closing import aclose
from gateway.common.failurelog import FailureLog
from gateway.common.intercept import Deserializer, Handler, WrappingInterceptor
from gateway.common.logs import LOGGED_ID_CHARS, current_call
from gateway.common.rpc import PUSHBACK_KEY, Context, cancelled_by_caller, metadata_value

log = logging.getLogger(__name__)

_DETAILS_KEY = "grpc-status-details-bin"

RETRY_AFTER_SECONDS = 1
"""The ``retry-after`` of a RESOURCE_EXHAUSTED: Sax reports an overloaded model without saying
for how long, and a limit of the gateway's own frees a slot when any call ends."""


def retry_metadata(seconds: int | str) -> tuple[tuple[str, str], ...]:
    """What tells HTTP clients (``retry-after``) and gRPC ones (`PUSHBACK_KEY`) to retry a
    call after ``seconds``."""
    return (("retry-after", str(seconds)), (PUSHBACK_KEY, str(int(seconds) * 1000)))


MAX_TEXT_BYTES = 2048
"""The most bytes a status message, or a field violation's description, takes in a header:
room for a quoted value (`gateway.common.limits.quote`) of 100 emoji, and what is said of it."""
MAX_FIELD_BYTES = 512
"""The most bytes a field violation's field name takes in a header: room for a quoted key
(``extra_inputs['...'… (100000 characters)]``)."""
MAX_VIOLATIONS = 4
"""Field violations reported; Sax's own BadRequest may have more. With a request ID of
`LOGGED_ID_CHARS`, the headers a status fills stay under 24 KiB together (tests/unit/
test_service_errors.py), well under Envoy's limit."""


def _header_bytes(char: str) -> int:
    """The most bytes ``char`` takes in a header the gateway writes: percent-encoded in
    ``grpc-message`` (3 per UTF-8 byte, but for printable ASCII other than "%"), as JSON
    with ``ensure_ascii`` in ``x-openai-error`` (``\\u00XX`` for a control character, a
    surrogate pair for an astral one), or as UTF-8 in ``grpc-status-details-bin``."""
    code = ord(char)
    if 0x20 <= code < 0x7F:
        return 3 if char == "%" else 2 if char in '"\\' else 1
    if code < 0x80:
        return 6
    return 12 if code > 0xFFFF else 9 if code >= 0x800 else 6


def clip(text: str, limit: int) -> str:
    """``text`` as it is if it takes at most ``limit`` bytes in any header (`_header_bytes`),
    else cut short to fit, with an ellipsis and its whole length::

        clip("x" * 5000, 100)  # 73 x's, then "… (5000 characters)": 100 bytes
    """
    size = 0
    for char in text:
        size += _header_bytes(char)
        if size > limit:
            break
    else:
        return text
    tail = f"… ({len(text)} characters)"
    room = limit - sum(map(_header_bytes, tail))
    kept = 0
    for char in text:
        room -= _header_bytes(char)
        if room < 0:
            break
        kept += 1
    return text[:kept] + tail


def violations(exc: BaseException) -> list[tuple[str, str]]:
    """The field violations ``exc`` names, as many and as long as a status carries."""
    named = getattr(exc, "field_violations", ())[:MAX_VIOLATIONS]
    return [(clip(f, MAX_FIELD_BYTES), clip(d, MAX_TEXT_BYTES)) for f, d in named]


_OUT_OF_MEMORY = FailureLog(log)

#: How upb (the protobuf runtime) ends a DecodeError's text when it could not allocate the
#: message, not when the bytes are wrong.
_DECODE_OUT_OF_MEMORY = "Arena alloc failed"


def out_of_memory() -> ResourceExhaustedError:
    """What a call is answered when the gateway runs out of memory for it (a cgroup or
    RLIMIT_AS cap, a large message): RESOURCE_EXHAUSTED, which Envoy sends as a 429 with
    ``Retry-After``. Before, an allocation that failed as the request was parsed was
    INVALID_ARGUMENT (400, ``the request does not parse: ...: Arena alloc failed``: the
    client's request blamed, and not to be retried), and one that failed later INTERNAL.
    Logged at WARNING when it starts, then at most once a minute while it goes on."""
    _OUT_OF_MEMORY.failed(
        ("allocating", "a call"),
        "this gateway ran out of memory for a call (its cgroup's or RLIMIT_AS limit?); its"
        " callers get RESOURCE_EXHAUSTED",
    )
    return ResourceExhaustedError("the gateway ran out of memory for this call; retry later")


def to_status(
    exc: BaseException, request_id: str = ""
) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """Returns the code, message and rich status that report ``exc`` to a caller, each text
    within its size (`clip`); a ``request_id`` (Envoy's x-request-id, cut to the prefix the
    access log keeps) travels as a ``google.rpc.RequestInfo`` detail."""
    if isinstance(exc, TimeoutError):
        exc = DeadlineExceededError("deadline exceeded before the Sax cell answered")
    if isinstance(exc, MemoryError):
        exc = out_of_memory()
    if isinstance(exc, SaxError):
        code, message = exc.code, exc.message
    else:
        log.exception("unexpected error in the gateway", exc_info=exc)
        code, message = grpc.StatusCode.INTERNAL, "internal error in sax-gateway"
    message = clip(message, MAX_TEXT_BYTES)
    status = status_pb2.Status(code=code.value[0], message=message)
    named = violations(exc)
    if named:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in named
                ]
            )
        )
        status.details.append(detail)
    if request_id:
        # The caller picks its x-request-id, as long as Envoy's header limit lets it.
        info = any_pb2.Any()
        info.Pack(error_details_pb2.RequestInfo(request_id=request_id[:LOGGED_ID_CHARS]))
        status.details.append(info)
    return code, message, status


def request_id(context: Context) -> str:
    """The call's ``x-request-id`` (set by Envoy on every request), or ""."""
    return metadata_value(context, "x-request-id") or ""


def reply_metadata(
    code: grpc.StatusCode, exc: BaseException
) -> tuple[tuple[str, str | bytes], ...]:
    """The metadata a failure with ``code`` carries besides its status: what ``exc`` names
    (its ``metadata``), and on every RESOURCE_EXHAUSTED ``retry-after`` (Envoy sends it as a
    header of the 429), unless ``exc`` names its own, and gRPC's pushback of as long (the
    OpenAI face's `reply_headers` send the retry-after, for HTTP clients alone)."""
    named: tuple[tuple[str, str | bytes], ...] = tuple(getattr(exc, "metadata", ()))
    if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return named
    seconds = next((str(v) for k, v in named if k == "retry-after"), RETRY_AFTER_SECONDS)
    kept = tuple((k, v) for k, v in named if k not in ("retry-after", PUSHBACK_KEY))
    return kept + retry_metadata(seconds)


#: Response trailer (a header of unary replies through Envoy) with the call's accelerator
#: milliseconds, the sum of what model servers reported in ``query_cost_v0``; absent when none
#: reported any.
COST_HEADER = "x-sax-query-cost-ms"


def cost_metadata() -> tuple[tuple[str, str], ...]:
    """The current call's cost trailer, if model servers reported a cost for it: a call that
    fails after a model answered it (an OpenAI ``n`` over the samples the model returns, the
    second prompt of two) spent that model's time too, which the metrics count."""
    cost = getattr(current_call.get(), "cost_ms", 0)
    return ((COST_HEADER, str(cost)),) if cost else ()


async def abort(context: Context, exc: BaseException) -> NoReturn:
    """Ends the call with the status that reports ``exc``; raises as `context.abort` does."""
    code, message, status = to_status(exc, request_id(context))
    await context.abort(
        code,
        message,
        trailing_metadata=(
            (_DETAILS_KEY, status.SerializeToString()),
            *reply_metadata(code, exc),
            *cost_metadata(),
        ),
    )


_Unary = Callable[[Any, Context], Awaitable[Any]]
_Streaming = Callable[[Any, Context], AsyncIterator[Any]]
# Ends a call with the status (and metadata) that reports an exception; never returns.
Report = Callable[[Context, BaseException], Awaitable[NoReturn]]


class _Malformed:
    """Stands in for a request whose bytes did not parse.

    A deserializer that raises makes grpc answer UNKNOWN (an HTTP 500 through Envoy), and
    Envoy's transcoder does produce such bytes for some odd JSON (an object where a map
    wants a string). Parsing is deferred to here so the caller gets INVALID_ARGUMENT.
    """

    __slots__ = ("error",)

    def __init__(self, error: SaxError) -> None:
        self.error = error


def malformed(error: SaxError) -> Any:
    """The request of a call the gateway refuses with ``error`` before its handler runs (no
    request message came: `RequestMessageInterceptor`'s ``inward``), which ErrorInterceptor
    then answers, inside the telemetry that counts the call."""
    return _Malformed(error)


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            if str(exc).endswith(_DECODE_OUT_OF_MEMORY):
                return _Malformed(out_of_memory())
            return _Malformed(InvalidArgumentError(f"the request does not parse: {exc}"))

    return parse


GRPC_FRAME_BYTES = 5
"""What gRPC puts before each message on the wire (a flag and a 4-byte length)."""


#: What a caller can do about a reply over the limit, by the reply's message type; a model's
#: answer otherwise. A cell's listing holds every model's definition (overrides up to 64 x 4
#: KiB each): hundreds of models with large overrides outgrow the limit, and "ask the model
#: for less" sent its caller after a model that is not there.
_OVER_LIMIT_HINTS = {
    "saxgateway.v1.ListModelsResponse": (
        "the definitions of the cell's models (their overrides, checkpoints) are too large to"
        " list at once: ask for them a page at a time (page_size, page_token)"
    ),
    "saxgateway.v1.GenerateStreamResponse": (
        "the stream's last message holds every sample's whole text, which its messages before"
        " it brought: ask the model for less (fewer or shorter samples)"
    ),
}
_ASK_THE_MODEL = "ask the model for less (fewer or shorter samples, fewer or smaller outputs)"


def check_reply(reply: Message, limit: int) -> None:
    """INVALID_ARGUMENT if ``reply``, framed, is over the gateway's message ``limit`` (a model's
    answer: images, samples, a custom method's bytes; a cell's listing). Left to gRPC it fails
    RESOURCE_EXHAUSTED "Sent message larger than max" once the work is done: a 429 that
    clients retry, redoing the work to fail again."""
    size = reply.ByteSize() + GRPC_FRAME_BYTES
    if size > limit:
        hint = _OVER_LIMIT_HINTS.get(reply.DESCRIPTOR.full_name, _ASK_THE_MODEL)
        raise InvalidArgumentError(
            f"the reply would be {size} bytes, over this gateway's limit of {limit} bytes: {hint}"
        )


def _wrap_unary(behavior: _Unary, report: Report, reply_limit: int | None = None) -> _Unary:
    async def call(request: Any, context: Context) -> Any:
        try:
            if type(request) is _Malformed:
                raise request.error
            reply = await behavior(request, context)
            if reply_limit is not None and reply is not None:
                check_reply(reply, reply_limit)
            return reply
        except BaseException as exc:
            await _answer(context, exc, report)

    return call


def _wrap_streaming(behavior: _Streaming, report: Report) -> _Streaming:
    if not inspect.isasyncgenfunction(behavior):
        # A handler that streams with context.write() and returns nothing, as
        # grpcio-health-checking's Health.Watch does, stays a coroutine: grpc.aio serves an
        # async generator and a writing coroutine differently.
        return cast(_Streaming, _wrap_unary(cast(_Unary, behavior), report))

    # The report done in place, as `reporting` does, not in a generator around this one:
    # one async generator fewer per open stream (held by each of 10,000; BENCHMARKS.md).
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            if type(request) is _Malformed:
                raise request.error
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            await _answer(context, exc, report)

    return call


async def _parsed(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if type(request) is _Malformed:
            raise request.error
        yield request


def _wrap_request_stream(
    behavior: Callable[[Any, Context], AsyncIterator[Any]], report: Report
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    """A bidirectional stream's behaviour (server reflection's): a request that does not
    parse raises where the behaviour reads it, and ends the call as ``report`` says."""

    async def call(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        try:
            async for response in behavior(_parsed(requests), context):
                yield response
        except BaseException as exc:
            await _answer(context, exc, report)

    return call


_Self = TypeVar("_Self")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def reporting(
    method: Callable[[_Self, _Req, Context], AsyncIterator[_Resp]], report: Report
) -> Callable[[_Self, _Req, Context], AsyncIterator[_Resp]]:
    """A streaming method whose exceptions end the call as ``report`` says, while a status
    the servicer set itself (``context.abort``) passes through. One generator around the
    method's, doing the work in place: each lives as long as its stream. The method's
    stream is closed as this one ends: a caller that left while grpc waited to send it a
    reply (one that had stopped reading) left it suspended, and the exception that ended
    the call kept it alive, through its traceback, until the garbage collector ran: tens of
    seconds in which an OpenAI stream's Sax call decoded on and its stream and model slots
    stayed taken."""

    @wraps(method)
    async def call(self: _Self, request: _Req, context: Context) -> AsyncIterator[_Resp]:
        stream = method(self, request, context)
        try:
            async for response in stream:
                yield response
        except BaseException as exc:
            await _answer(context, exc, report)
        finally:
            await aclose(stream)

    return call


async def _answer(context: Context, exc: BaseException, report: Report) -> NoReturn:
    """Ends the call as ``report`` says for what its handler raised; re-raises what is no
    failure of the handler: a status it set itself (``context.abort``), grpc's own errors
    about the call, the caller's own cancellation, the closing of a generator and the
    interpreter's exits."""
    # A channel closed under an outgoing call (not the caller's own cancellation): nobody
    # catches that one, and the handler would end without a status, leaving the caller
    # waiting until its deadline (or Envoy's route timeout). Answer it instead.
    if isinstance(exc, asyncio.CancelledError) and not cancelled_by_caller():
        await report(context, UnavailableError("a connection closed under the call"))
    # grpc.aio.BaseError: an abort (AbortError), or a status that could not be sent because
    # the caller left as it was reported (an inner layer's report, as the OpenAI methods'
    # inside this interceptor). grpc drops the latter quietly; reported again, it would be a
    # second abort, which grpc refuses with a UsageError that it logs as a servicer's bug.
    if isinstance(exc, grpc.aio.BaseError) or not isinstance(exc, Exception):
        raise exc
    # A method a generated servicer base leaves unimplemented sets UNIMPLEMENTED, then raises
    # NotImplementedError: the status it set is the answer (grpc's own, without this
    # interceptor), not an INTERNAL with a traceback. A NotImplementedError of any other
    # code is a bug of ours, and stays one.
    if isinstance(exc, NotImplementedError) and _code(context) == grpc.StatusCode.UNIMPLEMENTED:
        await report(context, UnimplementedError(str(context.details() or exc)))
    await report(context, exc)


def _code(context: Context) -> grpc.StatusCode | None:
    """The code the handler set on ``context`` (`set_code`), if any."""
    try:
        return context.code()
    except NotImplementedError:  # a context that does not keep it
        return None


class ErrorInterceptor(WrappingInterceptor):
    """Wraps every handler so that escaping exceptions become proper statuses: by `abort`,
    or by the report ``reports`` names for the service (its path prefix), as the service's
    own errors are reported (a request that does not parse never reaches its methods). A
    unary reply over ``reply_limit`` bytes fails as `check_reply` says."""

    def __init__(
        self, reports: Mapping[str, Report] | None = None, *, reply_limit: int | None = None
    ) -> None:
        super().__init__()
        self._reports = dict(reports or {})
        self._reply_limit = reply_limit

    def _report(self, method: str) -> Report:
        prefix = next((p for p in self._reports if method.startswith(p)), None)
        return abort if prefix is None else self._reports[prefix]

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        if not handler.request_streaming:
            return super().wrap_handler(method, handler)
        if handler.stream_stream is None or not inspect.isasyncgenfunction(handler.stream_stream):
            return handler  # none such is served
        # grpc reports a request stream's message that does not parse as UNKNOWN, naming
        # the exception's class ("Unexpected <class '...DecodeError'>").
        return grpc.stream_stream_rpc_method_handler(
            _wrap_request_stream(handler.stream_stream, self._report(method)),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def deserializer(self, parse: Deserializer) -> Deserializer:
        return _tolerant(parse)

    def wrap_unary(self, method: str, behavior: _Unary) -> _Unary:
        return _wrap_unary(behavior, self._report(method), self._reply_limit)

    def wrap_streaming(self, method: str, behavior: _Streaming) -> _Streaming:
        return _wrap_streaming(behavior, self._report(method))
