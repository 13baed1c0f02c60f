"""Per-call telemetry: one interceptor for the gateway's own calls, one observer for the Sax
RPCs they make. With metrics and tracing off they still carry the query cost to the caller.

The interceptor wraps every SaxGateway method (outside the error interceptor, so it sees the
final status): it counts the call, times it, opens its server span, and makes the call the
task's ``current_call``, through which the observer's Sax attempts find their parent span and
add up the ``query_cost_v0`` model servers report. The total goes back to the caller as the
``x-sax-query-cost-ms`` header (unary calls; a trailer with ``cost_header`` off) or trailer
(streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import grpc
from opentelemetry.trace import Span

from gateway.client import Attempt, Client, Observer, query_cost_ms
from gateway.common.logs import current_call
from gateway.service._context import Context
from gateway.service._metrics import GatewayMetrics
from gateway.service._tracing import Metadata, Tracing, end_span

#: Response header (unary) or trailer (streams) with the call's accelerator milliseconds, the
#: sum of what model servers reported in ``query_cost_v0``; absent when none reported any.
COST_HEADER = "x-sax-query-cost-ms"
_SERVICE_PREFIX = "/saxgateway.v1.SaxGateway/"
_OK = grpc.StatusCode.OK


def _no_text(_: Any) -> int:
    return 0


def _texts(response: Any) -> int:
    return sum(len(t.text) for t in response.texts)


#: Model calls: gRPC method -> (gen_ai.operation.name, input characters, output characters).
#: Operation names are Sax's method names, as saxutil spells them.
DATA_METHODS: dict[str, tuple[str, Callable[[Any], int], Callable[[Any], int]]] = {
    "Generate": ("lm.generate", lambda r: len(r.query), _texts),
    "GenerateStream": ("lm.generate_stream", lambda r: len(r.query), _no_text),  # per chunk
    "Score": ("lm.score", lambda r: len(r.prefix) + sum(map(len, r.suffix)), _no_text),
    "Embed": ("lm.embed", lambda r: len(r.text), _no_text),
    "Gradient": ("lm.gradient", lambda r: len(r.prefix) + len(r.suffix), _no_text),
    "Classify": ("vm.classify", _no_text, _texts),
    "TextToImage": ("vm.text_to_image", lambda r: len(r.text), _no_text),
    "EmbedImage": ("vm.embed", _no_text, _no_text),
    "Detect": ("vm.detect", lambda r: sum(map(len, r.text)), _no_text),
    "ImageToText": ("vm.image_to_text", lambda r: len(r.text), _texts),
    "Recognize": ("am.recognize", _no_text, _texts),
}


class _Call:
    """The call a task serves: its span and cost so far; its request ID, read on demand."""

    __slots__ = ("_context", "cost_ms", "span")

    def __init__(self, context: Context) -> None:
        self._context = context
        self.cost_ms = 0
        self.span: Span | None = None

    @property
    def request_id(self) -> str | None:
        for key, value in self._context.invocation_metadata() or ():  # type: ignore[attr-defined]
            if key == "x-request-id":
                return str(value)
        return None


def _code(exc: BaseException, context: Any) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()  # set by the error interceptor's abort
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class _Attempt(Attempt):
    __slots__ = ("_call", "_span", "metadata")

    def __init__(self, call: _Call, span: Span | None, metadata: Metadata | None) -> None:
        self._call = call
        self._span = span
        self.metadata = metadata

    def end(self, code: grpc.StatusCode, trailing: Metadata | None) -> None:
        cost = query_cost_ms(trailing) if trailing else None
        if cost:
            self._call.cost_ms += cost
        if self._span is not None:
            end_span(self._span, code, {"sax.query_cost_ms": cost} if cost else None)


class GatewayObserver(Observer):
    """Turns the Sax client's events into metrics and client spans."""

    def __init__(self, metrics: GatewayMetrics | None, tracing: Tracing | None) -> None:
        self._metrics = metrics
        self._tracing = tracing

    def attempt(self, target: str, method: str, address: str, number: int) -> Attempt:
        if self._metrics is not None and method.startswith("admin."):
            self._metrics.admin_rpcs.labels(method[6:]).inc()
        call = cast(_Call | None, current_call.get())
        if call is None:
            return Attempt()  # a background RPC (an address watch), part of no call
        if self._tracing is not None and call.span is not None:
            span, metadata = self._tracing.client_span(call.span, method, address, number)
            return _Attempt(call, span, metadata)
        return _Attempt(call, None, None)

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


class _Recorder:
    """Records finished calls of one method; label children are looked up once, then cached."""

    def __init__(self, method: str, metrics: GatewayMetrics | None, client: Client) -> None:
        self.method = method
        self._metrics = metrics
        self._client = client
        self.data = DATA_METHODS.get(method)
        self._requests: dict[grpc.StatusCode, Any] = {}
        # (model label, error type) -> duration, input and output characters, cost children.
        self._by_model: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def _model(self, request: Any) -> str:
        assert self._metrics is not None
        model_id = getattr(request, "model", "")
        return self._metrics.model_label(model_id, self._client.is_serving(model_id))

    def finish(
        self,
        request: Any,
        response: Any,
        code: grpc.StatusCode,
        elapsed: float,
        call: _Call,
        out_chars: int | None = None,
    ) -> None:
        m = self._metrics
        if m is None:
            return
        child = self._requests.get(code)
        if child is None:
            child = self._requests[code] = m.requests.labels(self.method, code.name)
        m.count(child)
        if self.data is None:
            return
        op, count_in, count_out = self.data
        model = self._model(request)
        error = "" if code is _OK else code.name
        children = self._by_model.get((model, error))
        if children is None:
            children = self._by_model[(model, error)] = (
                m.request_duration.labels(op, model, error),
                m.text_characters.labels(op, model, "input"),
                m.text_characters.labels(op, model, "output"),
                m.query_cost.labels(op, model),
            )
        duration, chars_in, chars_out, cost = children
        m.observe(duration, elapsed)
        if type(request).__name__ != "_Malformed" and (chars := count_in(request)):
            m.count(chars_in, chars)
        if out_chars is None and response is not None:
            out_chars = count_out(response)
        if out_chars:
            m.count(chars_out, out_chars)
        if call.cost_ms:
            m.count(cost, call.cost_ms)

    def stream_timing(self, request: Any, ttft: float, per_chunk: float | None) -> None:
        if self._metrics is None or self.data is None:
            return
        m, op, model = self._metrics, self.data[0], self._model(request)
        m.observe(m.time_to_first_token.labels(op, model), ttft)
        if per_chunk is not None:
            m.observe(m.time_per_output_token.labels(op, model), per_chunk)


_Unary = Callable[[Any, Context], Awaitable[Any]]
_Streaming = Callable[[Any, Context], AsyncIterator[Any]]


class TelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Counts, times and traces every SaxGateway call; wrapped handlers are cached per method."""

    def __init__(
        self,
        metrics: GatewayMetrics | None,
        tracing: Tracing | None,
        client: Client,
        *,
        cost_header: bool = True,
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing
        self._client = client
        self._cost_header = cost_header
        self._cache: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or not method.startswith(_SERVICE_PREFIX):
            return handler  # health checks and reflection are not the gateway's calls
        recorder = _Recorder(method.rpartition("/")[2], self._metrics, self._client)
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, recorder),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method, recorder),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        self._cache[method] = wrapped
        return wrapped

    def _unary(self, behavior: _Unary, method: str, recorder: _Recorder) -> _Unary:
        tracing, metrics, cost_header = self._tracing, self._metrics, self._cost_header
        gauge = metrics.in_flight.labels(recorder.method) if metrics else None

        async def call(request: Any, context: Any) -> Any:
            record = _Call(context)
            token = current_call.set(record)
            if tracing is not None:
                record.span = tracing.server_span(method, context.invocation_metadata() or ())
            if metrics is not None:
                metrics.add_level(gauge, 1)
            code, response, started = _OK, None, time.perf_counter()
            try:
                response = await behavior(request, context)
                if record.cost_ms:
                    cost = ((COST_HEADER, str(record.cost_ms)),)
                    if cost_header:
                        # Initial metadata: a unary call's trailers never reach an HTTP/JSON
                        # client through the transcoder. One more send on the stream.
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
                recorder.finish(request, response, code, elapsed, record)
                if record.span is not None:
                    _end_server_span(record, recorder, request, code)

        return call

    def _streaming(self, behavior: _Streaming, method: str, recorder: _Recorder) -> _Streaming:
        tracing, metrics = self._tracing, self._metrics
        gauge = metrics.streams_open.labels(recorder.method) if metrics else None
        chunks_count = recorder.method == "GenerateStream"

        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            record = _Call(context)
            token = current_call.set(record)
            if tracing is not None:
                record.span = tracing.server_span(method, context.invocation_metadata() or ())
            if metrics is not None:
                metrics.add_level(gauge, 1)
            code, started = _OK, time.perf_counter()
            first = last = 0.0
            chunks = chars = 0
            try:
                async for response in behavior(request, context):
                    if chunks_count and response.deltas:
                        last = time.perf_counter()
                        first = first or last
                        chunks += 1
                        chars += sum(len(d.text) for d in response.deltas)
                    yield response
                if record.cost_ms:
                    context.set_trailing_metadata(((COST_HEADER, str(record.cost_ms)),))
            except BaseException as exc:
                code = _code(exc, context)
                raise
            finally:
                elapsed = time.perf_counter() - started
                with contextlib.suppress(ValueError):  # closed from another context (GC)
                    current_call.reset(token)
                if metrics is not None:
                    metrics.add_level(gauge, -1)
                recorder.finish(request, None, code, elapsed, record, out_chars=chars)
                if chunks:
                    per_chunk = (last - first) / (chunks - 1) if chunks > 1 else None
                    recorder.stream_timing(request, first - started, per_chunk)
                if record.span is not None:
                    _end_server_span(record, recorder, request, code)

        return call


def _end_server_span(call: _Call, recorder: _Recorder, request: Any, code: grpc.StatusCode) -> None:
    assert call.span is not None
    attributes: dict[str, int | str] = {}
    if recorder.data is not None:
        attributes["gen_ai.operation.name"] = recorder.data[0]
        attributes["gen_ai.request.model"] = str(getattr(request, "model", ""))
    if request_id := call.request_id:
        attributes["saxgw.request_id"] = request_id
    if call.cost_ms:
        attributes["sax.query_cost_ms"] = call.cost_ms
    end_span(call.span, code, attributes)
