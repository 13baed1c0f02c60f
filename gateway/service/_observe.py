"""Per-call telemetry: one interceptor for the gateway's own calls, one observer for the Sax
RPCs they make. With metrics and tracing off they still carry the query cost to the caller.

The interceptor wraps every SaxGateway method (outside the error interceptor, so it sees the
final status): it counts the call, times it, opens its server span, and makes the call the
task's ``current_call``, through which the observer's Sax attempts find their parent span and
add up the ``query_cost_v0`` model servers report. The total goes back to the caller as the
``x-sax-query-cost-ms`` trailer, which the stack's Envoy copies into the headers of unary
replies (or, with ``cost_header`` on, as a header the gateway sends itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc
from opentelemetry.trace import Span

from gateway.client import Attempt, Client, Observer, query_cost_ms
from gateway.client._observer import Trailers
from gateway.common.intercept import Streaming, Unary, WrappingInterceptor
from gateway.common.logs import LOGGED_ID_CHARS, current_call
from gateway.common.rpc import call_metadata, status_refused
from gateway.service._access import Access
from gateway.service._errors import COST_HEADER
from gateway.service._metrics import GatewayMetrics
from gateway.service._tracing import Metadata, Tracing, end_span
from gateway.service._usage import CallRecord, Recorder, StreamText, request_model

if TYPE_CHECKING:  # the OpenAI package imports note_usage from here
    from gateway.service.openai._tokens import TokenCounter

_SERVICES = ("/saxgateway.v1.SaxGateway/", "/saxgateway.v1.OpenAIGateway/")
_ANONYMOUS = "anonymous"
_OK = grpc.StatusCode.OK
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED


def _code(exc: BaseException, context: Any, answered: bool = False) -> grpc.StatusCode | None:
    """The status a call that raised ``exc`` ended with; ``answered``: a stream whose last
    message went out (`note_answered`), for which a cancellation is its client leaving
    after the whole answer, no CANCELLED. When grpc ended the call with a status of its own
    (`status_refused`), the gateway never learns which: past the call's deadline it is
    DEADLINE_EXCEEDED (the caller's 504: an admin change that outlived a deadline of a few
    milliseconds, made but answered late, went uncounted); otherwise None, and the call is
    recorded nowhere, as those grpc fails before any gateway code runs (Envoy's access log
    has its status): it was counted UNKNOWN, a server failure, for a caller's message grpc
    could not take."""
    if status_refused(exc):
        remaining = context.time_remaining()
        return _DEADLINE if remaining is not None and remaining <= 0 else None
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()  # set by the error interceptor's abort
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return _OK if answered else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class _Attempt(Attempt):
    __slots__ = ("_call", "_span", "metadata")

    def __init__(self, call: CallRecord, span: Span | None, metadata: Metadata | None) -> None:
        self._call = call
        self._span = span
        self.metadata = metadata

    def end(self, code: grpc.StatusCode, trailing: Trailers | None) -> None:
        cost = query_cost_ms(trailing) if trailing else None
        if cost:
            self._call.cost_ms += cost
        if self._span is not None:
            end_span(self._span, code, {"sax.query_cost_ms": cost} if cost else None)


def _request_id_metadata(call: CallRecord) -> tuple[tuple[str, str], ...]:
    """The call's x-request-id for the RPCs it makes to Sax, as each hop logs a call by it
    (a sidecar in front of a model server too): the prefix the logs keep, and none that is
    not printable ASCII, which grpc refuses to send (the RPC would fail for it)."""
    request_id = (call.request_id or "")[:LOGGED_ID_CHARS]
    if request_id and request_id.isascii() and request_id.isprintable():
        return (("x-request-id", request_id),)
    return ()


class GatewayObserver(Observer):
    """Turns the Sax client's events into metrics and client spans."""

    def __init__(self, metrics: GatewayMetrics | None, tracing: Tracing | None) -> None:
        self._metrics = metrics
        self._tracing = tracing

    def attempt(self, target: str, method: str, address: str, number: int) -> Attempt:
        if self._metrics is not None and method.startswith("admin."):
            self._metrics.admin_rpcs.labels(method[6:]).inc()
        call = cast(CallRecord | None, current_call.get())
        if call is None:
            return Attempt()  # a background RPC (an address watch), part of no call
        sent = _request_id_metadata(call)
        if self._tracing is not None and call.span is not None:
            span, metadata = self._tracing.client_span(call.span, method, address, number)
            return _Attempt(call, span, (*sent, *metadata))
        return _Attempt(call, None, sent or None)

    def failover(self, model_id: str, address: str, code: grpc.StatusCode) -> None:
        if self._metrics is not None:
            label = self._metrics.model_label(model_id, known=True)
            self._metrics.failovers.labels(label, code.name).inc()

    def retry(self, model_id: str) -> None:
        if self._metrics is not None:
            self._metrics.retries.labels(self._metrics.model_label(model_id, known=True)).inc()

    def addresses_changed(self, model_id: str, addresses: Sequence[str]) -> None:
        if self._metrics is not None:
            self._metrics.set_replicas(model_id, addresses)

    def model_gone(self, model_id: str) -> None:
        if self._metrics is not None:
            self._metrics.forget_model(model_id)


class TelemetryInterceptor(WrappingInterceptor):
    """Counts, times and traces every SaxGateway and OpenAIGateway call; health checks and
    reflection are not the gateway's calls."""

    def __init__(
        self,
        metrics: GatewayMetrics | None,
        tracing: Tracing | None,
        client: Client,
        access: Access | None = None,
        tokens: TokenCounter | None = None,
        *,
        cost_header: bool = False,
    ) -> None:
        super().__init__(_SERVICES)
        self._metrics = metrics
        self._tracing = tracing
        self._client = client
        self._access = access
        self._tokens = tokens
        self._cost_header = cost_header

    def _recorder(self, method: str) -> Recorder:
        name = method.rpartition("/")[2]
        return Recorder(name, self._metrics, self._client, self._tokens)

    def _record(self, method: str, context: Any) -> CallRecord:
        """The new call's record (caller identified, span started), made the current call."""
        access = self._access
        client = access.identity(context) if access is not None else None
        label = access.label(client) if access is not None else _ANONYMOUS
        record = CallRecord(context, client, label)
        if self._tracing is not None:
            record.span = self._tracing.server_span(method, call_metadata(context))
        return record

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        recorder = self._recorder(method)
        metrics, cost_header = self._metrics, self._cost_header
        gauge = metrics.in_flight.labels(recorder.method) if metrics else None

        async def call(request: Any, context: Any) -> Any:
            record = self._record(method, context)
            token = current_call.set(record)
            if metrics is not None:
                metrics.add_level(gauge, 1)
            code: grpc.StatusCode | None = _OK
            response, started = None, time.perf_counter()
            try:
                response = await behavior(request, context)
                if record.cost_ms:
                    cost = ((COST_HEADER, str(record.cost_ms)),)
                    if cost_header:
                        # Initial metadata of its own: one more send on the stream, ~19% of
                        # the gateway's CPU per call. Envoy's cost_header filter does it
                        # cheaper from the trailer (gateway/launch/envoy.yaml.tmpl).
                        await context.send_initial_metadata(cost)
                    else:
                        context.set_trailing_metadata(cost)
                return response
            except BaseException as exc:
                code = _code(exc, context)
                raise
            finally:
                elapsed = time.perf_counter() - started
                current_call.reset(token)
                if metrics is not None:
                    metrics.add_level(gauge, -1)
                if code is not None:
                    recorder.finish(request, response, code, elapsed, record)
                    if record.span is not None:
                        _end_server_span(record, recorder, request, code)
                record.end()

        return call

    def wrap_streaming(self, method: str, behavior: Streaming) -> Streaming:
        recorder = self._recorder(method)
        metrics = self._metrics
        gauge = metrics.streams_open.labels(recorder.method) if metrics else None
        chunked = recorder.method == "GenerateStream"  # the other streams are OpenAI's

        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            record = self._record(method, context)
            token = current_call.set(record)
            if metrics is not None:
                metrics.add_level(gauge, 1)
            code: grpc.StatusCode | None = _OK
            started = time.perf_counter()
            stream = record.stream = StreamText()
            try:
                async for response in behavior(request, context):
                    if chunked and response.deltas:
                        stream.add(time.perf_counter(), response.deltas)
                    yield response
                if record.cost_ms:
                    context.set_trailing_metadata(((COST_HEADER, str(record.cost_ms)),))
            except BaseException as exc:
                code = _code(exc, context, record.answered)
                raise
            finally:
                elapsed = time.perf_counter() - started
                with contextlib.suppress(ValueError):  # closed from another context (GC)
                    current_call.reset(token)
                if metrics is not None:
                    metrics.add_level(gauge, -1)
                if code is not None:
                    recorder.finish(
                        request, None, code, elapsed, record, stream if chunked else None
                    )
                    recorder.stream_timing(request, stream, started, record)
                    if record.span is not None:
                        _end_server_span(record, recorder, request, code)
                record.end()

        return call


def _end_server_span(
    call: CallRecord, recorder: Recorder, request: Any, code: grpc.StatusCode
) -> None:
    assert call.span is not None
    attributes: dict[str, int | str] = {}
    if recorder.operation is not None:
        attributes["gen_ai.operation.name"] = recorder.operation
        model = call.usage.model_id if call.usage else request_model(request)
        if model:  # a request that names none (refused for it) has no model to tell
            attributes["gen_ai.request.model"] = str(model)
    # What the caller set, as the logs keep it: a caller's x-request-id may be as long as the
    # header limit, and spans export in batches that a collector refuses whole beyond its
    # message limit (4 MiB by default), so a few long IDs lost the spans exported with them.
    if call.client is not None:
        attributes["enduser.id"] = call.client[:LOGGED_ID_CHARS]
    if request_id := call.request_id:
        attributes["saxgw.request_id"] = request_id[:LOGGED_ID_CHARS]
    if call.cost_ms:
        attributes["sax.query_cost_ms"] = call.cost_ms
    end_span(call.span, code, attributes, server=True)
