"""OpenTelemetry traces, exported with OTLP/gRPC; built only when an endpoint is configured.

A call's W3C ``traceparent`` (from the HTTP or gRPC client, forwarded by Envoy as request
metadata) becomes the parent of the gateway's server span; each RPC the gateway then sends to
a Sax server gets a client span, and its own ``traceparent`` as gRPC metadata, so a model
server that traces joins the same trace. With no endpoint none of this module runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.common.failurelog import REPEAT_S
from gateway.common.flags import otlp_target, tls_endpoint

Metadata = Sequence[tuple[str, str | bytes]]

#: How long a stopping gateway may spend exporting the spans it still holds (seconds).
SHUTDOWN_TIMEOUT_S = 2.0
#: How long a stopping gateway waits for the spans of the calls it cut to end (seconds).
OPEN_SPANS_WAIT_S = 1.0

_PROPAGATOR = TraceContextTextMapPropagator()


#: The OTLP exporter's logger: a line for each retry and each failed batch.
EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"


class ExportFailures(logging.Filter):
    """The exporter logs a WARNING for each retry and an ERROR for each batch it gives up,
    every few seconds per gateway process for as long as the collector is down (over a
    thousand lines an hour from two gateways, ERRORs among them). Instead, as for other
    failures that repeat (gateway/common/failurelog.py): the first line, then at most one a
    minute, saying how many were left out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._logged_at: float | None = None
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < REPEAT_S:
            self._left_out += 1
            return False
        if self._left_out:
            record.msg = f"{record.getMessage()} ({self._left_out} more such lines left out)"
            record.args = ()
        self._logged_at, self._left_out = now, 0
        return True


#: The loggers of the OpenTelemetry API's reading of a caller's ``tracestate``: a WARNING,
#: with the caller's text in it, for each header that does not parse (a bad member, more than
#: 32, over 512 characters).
CALLER_TRACESTATE_LOGGERS = (
    "opentelemetry.trace.span",
    "opentelemetry.trace.propagation.tracecontext",
)


class CallerTraceState(logging.Filter):
    """Drops the parser's lines about a caller's ``tracestate``: any caller could put one in
    the gateway's log with every call. The header is dropped and the trace goes on, as W3C
    Trace Context asks; a caller's malformed header is no fault of the gateway's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


def _add_filter(logger: str, new: logging.Filter) -> None:
    """Adds ``new`` to ``logger`` in place of a filter of its class (one per process, however
    many ``Tracing`` objects are made)."""
    log = logging.getLogger(logger)
    for old in [f for f in log.filters if type(f) is type(new)]:
        log.removeFilter(old)
    log.addFilter(new)


def _carrier(metadata: Metadata) -> dict[str, str | list[str]]:
    """The caller's trace context; several ``tracestate`` headers are one list, in order
    (W3C Trace Context, as RFC 9110 joins a field's lines), where a dict kept the last."""
    carrier: dict[str, str | list[str]] = {}
    states: list[str] = []
    for key, value in metadata:
        if key == "traceparent" and isinstance(value, str):
            carrier[key] = value
        elif key == "tracestate" and isinstance(value, str):
            states.append(value)
    if states:
        carrier["tracestate"] = [",".join(states)]
    return carrier


class Tracing:
    """A tracer whose spans go to one OTLP/gRPC endpoint in batches."""

    def __init__(
        self,
        endpoint: str,
        service_name: str,
        sample_ratio: float = 1.0,
        certificate: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        # The SDK and the exporter are imported here, not above: they take a second or two to
        # import, which every saxgw command would pay while only tracing gateways use them.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        # A caller's sampled flag is followed; traces that start here keep ``sample_ratio``.
        sampler = ParentBased(TraceIdRatioBased(sample_ratio))
        self._provider: Any = TracerProvider(resource=resource, sampler=sampler)
        # Plaintext unless the endpoint says https://, as Envoy's exporter (its google_grpc
        # target, gateway/launch/envoy.py) reads it: a HOST:PORT endpoint, which --otlp-endpoint
        # takes, was TLS here, so a collector got Envoy's spans and none of the gateway's.
        # With TLS, the collector's certificate is checked against ``certificate`` (a PEM
        # file), else the system's roots.
        secure = tls_endpoint(endpoint)
        roots = Path(certificate).read_bytes() if secure and certificate else None
        credentials = grpc.ssl_channel_credentials(roots) if secure else None
        exporter = OTLPSpanExporter(
            endpoint=otlp_target(endpoint),
            insecure=not secure,
            credentials=credentials,
            headers=tuple(headers) or None,
        )
        self._exporter = exporter
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        _add_filter(EXPORTER_LOGGER, ExportFailures())
        for logger in CALLER_TRACESTATE_LOGGERS:
            _add_filter(logger, CallerTraceState())
        self._tracer = self._provider.get_tracer("sax-gateway", __version__)

    def server_span(self, full_method: str, metadata: Metadata) -> Span:
        """The span of one gateway call, child of the caller's ``traceparent`` if it sent one."""
        parent = _PROPAGATOR.extract(_carrier(metadata))
        service, _, method = full_method.lstrip("/").partition("/")
        start = _Start(time.time_ns(), time.monotonic_ns())
        span = self._tracer.start_span(
            full_method.lstrip("/"),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            start_time=start.wall,
        )
        _starts[span] = start
        return span

    def client_span(
        self, parent: Span, method: str, address: str, number: int
    ) -> tuple[Span, tuple[tuple[str, str], ...]]:
        """A span for one RPC to a Sax server, and the metadata that carries it there."""
        host, _, port = address.rpartition(":")
        start = _Start.since(_starts.get(parent))
        span = self._tracer.start_span(
            f"sax {method}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.method": method,
                "server.address": host,
                "server.port": int(port) if port.isdigit() else 0,
                "sax.attempt": number,
                "sax.failover": number > 1,
            },
            start_time=start.wall,
        )
        _starts[span] = start
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return span, tuple(carrier.items())

    async def open_spans_ended(self, timeout: float = OPEN_SPANS_WAIT_S) -> None:
        """Waits, up to ``timeout`` seconds, for the spans still open to end, before the last
        flush (`shutdown`). A call the stop cut ends its span in its handler, some turns of
        the event loop after grpc cancelled it: on a loaded host, after the flush had begun,
        so a cut stream's span was never sent."""
        deadline = time.monotonic() + timeout
        while _starts and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Exports what is still buffered and stops the exporter, within ``timeout`` seconds.

        The SDK's own shutdown retries each buffered batch for up to 10 s against a collector
        that is down (up to 30 s in all): every gateway stop, a rolling restart's included,
        took that much longer. Past ``timeout`` the exporter is told to stop, which ends its
        retries and drops what is left."""
        stop = threading.Timer(timeout, self._exporter.shutdown)
        stop.start()
        try:
            self._provider.shutdown()
        finally:
            stop.cancel()


class _Start:
    """When a span started: on the wall clock (what a trace shows) and on the monotonic one.
    A call's spans are timed on the monotonic clock from its server span's start: each
    OpenTelemetry span read the wall clock at its start and end, so a step of it (NTP, a
    VM's resume) during a call gave its spans negative or hour-long durations, and its Sax
    RPCs' spans starts before their parent's."""

    __slots__ = ("monotonic", "wall")

    def __init__(self, wall: int, monotonic: int) -> None:
        self.wall, self.monotonic = wall, monotonic

    @classmethod
    def since(cls, origin: _Start | None) -> _Start:
        """Now, on ``origin``'s timeline (the wall clock's, without one)."""
        monotonic = time.monotonic_ns()
        if origin is None:
            return cls(time.time_ns(), monotonic)
        return cls(origin.wall + monotonic - origin.monotonic, monotonic)


#: Each span's start, while the span lives.
_starts: weakref.WeakKeyDictionary[Span, _Start] = weakref.WeakKeyDictionary()


#: The codes that make a server span an error, as OpenTelemetry's gRPC conventions list them:
#: the server's failures. A caller's mistake (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED,
#: RESOURCE_EXHAUSTED...) or its leaving (CANCELLED) is no server error, as Envoy's own span
#: marks only 5xx: a backend's error rate of the gateway's spans counted every typo.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def end_span(
    span: Span,
    code: grpc.StatusCode,
    attributes: dict[str, int | str] | None = None,
    *,
    server: bool = False,
) -> None:
    """Ends ``span`` with the gRPC status ``code``: an error for a client span whatever went
    wrong, for a ``server`` span only when the server failed (``error.type`` names any code
    but OK either way)."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if attributes:
        span.set_attributes(attributes)
    if code is not grpc.StatusCode.OK:
        span.set_attribute("error.type", code.name)
        if not server or code in SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code.name))
    start = _starts.pop(span, None)
    span.end(end_time=None if start is None else _Start.since(start).wall)
