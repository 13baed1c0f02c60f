"""A real OTLP/gRPC trace receiver: a TraceService server built from opentelemetry-proto that
keeps every span it is sent, for tests to inspect."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Collects spans; ``endpoint`` is what a gateway's --otlp-endpoint should be: https:// when
    ``tls`` (a certificate chain and its key, PEM) is given. With ``key`` (a metadata name and
    value), an export without it is refused UNAUTHENTICATED, as a hosted collector does."""

    def __init__(
        self, tls: tuple[bytes, bytes] | None = None, key: tuple[str, str] | None = None
    ) -> None:
        self._key = key
        self._spans: list[trace_pb2.Span] = []
        self._services: dict[bytes, str] = {}  # span ID -> service.name of its resource
        self._lock = threading.Lock()
        self._answering = threading.Event()
        self._answering.set()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        # opentelemetry-proto's generated *_pb2_grpc modules carry no annotations.
        add = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add(self, self._server)  # type: ignore[no-untyped-call]
        if tls is None:
            port = self._server.add_insecure_port("127.0.0.1:0")
            self.endpoint = f"http://127.0.0.1:{port}"
        else:
            chain, private_key = tls
            credentials = grpc.ssl_server_credentials([(private_key, chain)])
            port = self._server.add_secure_port("127.0.0.1:0", credentials)
            self.endpoint = f"https://127.0.0.1:{port}"

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        while not self._answering.wait(0.05):  # a hung collector: keeps the batch, no answer
            if not context.is_active():
                return trace_service_pb2.ExportTraceServiceResponse()
        if self._key is not None and self._key not in (context.invocation_metadata() or ()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no collector key")
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._spans.append(span)
                        self._services[span.span_id] = attributes.get("service.name", "")
        return trace_service_pb2.ExportTraceServiceResponse()

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Within, every export is read and never answered (until its caller gives up)."""
        self._answering.clear()
        try:
            yield
        finally:
            self._answering.set()

    def spans(self, trace_id: bytes) -> list[trace_pb2.Span]:
        with self._lock:
            return [s for s in self._spans if s.trace_id == trace_id]

    def service(self, span: trace_pb2.Span) -> str:
        """The ``service.name`` of the process that sent ``span``."""
        with self._lock:
            return self._services[span.span_id]

    def wait_until(
        self,
        trace_id: bytes,
        done: Callable[[list[trace_pb2.Span]], bool],
        timeout: float = 30.0,
    ) -> list[trace_pb2.Span]:
        """The trace's spans once ``done`` holds for them (or the timeout passed): the
        exporters send in batches, Envoy's and the gateway's apart."""
        deadline = time.monotonic() + timeout
        while not done(spans := self.spans(trace_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return spans

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=0)


def attributes(span: trace_pb2.Span) -> dict[str, object]:
    """A span's attributes as plain Python values."""
    out: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out
