"""Server wiring: the SaxGateway servicer, health and reflection on one grpc.aio server.

Shutdown follows gRPC's graceful pattern: stop accepting new calls, let in-flight ones finish
within the grace period, then cancel what is left.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field, replace

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc, openai_pb2, openai_pb2_grpc

from gateway.client import Client
from gateway.common import logs, metricsfiles
from gateway.common.listen import ListenError, bracketed, check_bind
from gateway.common.request_message import RequestMessageInterceptor
from gateway.common.rpc import add_servicer
from gateway.common.slottable import SlotTable
from gateway.config import GatewaySettings, calls_grace
from gateway.service._access import Access, AccessInterceptor
from gateway.service._counts import Counts, LocalCounts, SharedCounts
from gateway.service._errors import ErrorInterceptor, abort, malformed, out_of_memory
from gateway.service._gates import uncounted
from gateway.service._health import SERVICE, HealthReporter
from gateway.service._metrics import FLUSH_INTERVAL_S, GatewayMetrics, use_directory
from gateway.service._observe import GatewayObserver, TelemetryInterceptor
from gateway.service._reflection import enable_reflection
from gateway.service._servicer import SaxGatewayServicer
from gateway.service._stackgate import StackCounts
from gateway.service._stacktoken import StackTokenInterceptor
from gateway.service._streams import StreamSlots
from gateway.service._tracing import Tracing
from gateway.service.openai import OpenAIGatewayServicer, report_error
from gateway.service.openai._tokens import TokenCounter

log = logging.getLogger(__name__)

_OPENAI_SERVICE = f"/{openai_pb2.DESCRIPTOR.services_by_name['OpenAIGateway'].full_name}/"

#: Calls that arrive before the servicer asks grpc for the next one wait in grpc's queue,
#: whose defaults (1,000; hard limit 3,000) cancel bursts: 10,000 streams opened at once
#: must wait, not fail (BENCHMARKS.md). Quotas (gateway/service/_access.py) bound the rest.
PENDING_CALLS_OPTIONS = (
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    # ...and are cancelled after 30 s there by default: a burst a loaded server takes longer
    # than that to start must still start (each call's own deadline still applies).
    ("grpc.server_max_unrequested_time_in_server", 300),
)

#: No HPACK dynamic table for the headers callers send: grpc refuses some malformed headers
#: (a bad grpc-timeout, a -bin header that is not base64) without adding them to its table,
#: while the sender (Envoy, for every client it serves) did, so every later request on that
#: connection that refers to the table by index failed with INTERNAL "Error parsing
#: '...' metadata", for minutes and for every client. Without the table each header is sent
#: in full, which Envoy's loopback hop hardly notices (BENCHMARKS.md).
HPACK_OPTIONS = (("grpc.http2.hpack_table_size.decoder", 0),)


@dataclass(eq=False)
class GatewayServer:
    """A running gateway: ``await GatewayServer.start(settings)``, then ``await stop()``."""

    settings: GatewaySettings
    client: Client
    port: int
    metrics: GatewayMetrics | None
    """The gateway's metrics; None when ``settings.telemetry.metrics`` is off."""
    _server: grpc.aio.Server
    _health: HealthReporter
    _tracing: Tracing | None
    _table: SlotTable | None
    _flusher: asyncio.Task[None] = field(init=False)

    def __post_init__(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_metrics())

    async def _flush_metrics(self) -> None:
        if self.metrics is None:
            return
        directory = self.settings.telemetry.metrics_dir
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush(last=False)
            if directory:
                metricsfiles.heartbeat(directory)

    def _flush(self, *, last: bool) -> None:
        """Writes the calls' counts out; in a metrics directory, under its lock, so that no
        scrape reads half of it. A flush that finds a scrape reading waits for the next one;
        the ``last`` (at exit) waits for the lock a moment, then writes anyway."""
        assert self.metrics is not None
        directory = self.settings.telemetry.metrics_dir
        if not directory:
            self.metrics.flush()
            return
        with metricsfiles.flushing(directory, wait=last) as free:
            if free or last:
                self.metrics.flush()

    @property
    def address(self) -> str:
        """``host:port`` the gRPC server listens on."""
        return f"{bracketed(self.settings.host)}:{self.port}"

    @classmethod
    async def start(cls, settings: GatewaySettings, client: Client | None = None) -> GatewayServer:
        """Starts serving; ``client`` defaults to a new Sax client for ``settings.sax_root``.
        `ListenError` if it cannot listen on ``settings.host:port``."""
        if settings.port:  # before anything starts; 0 is any free port
            check_bind(settings.host, settings.port)
        telemetry = settings.telemetry
        if telemetry.metrics and telemetry.metrics_dir:
            use_directory(telemetry.metrics_dir)
        metrics = GatewayMetrics() if telemetry.metrics else None
        if metrics is not None:
            # At once, not at the first flush: a process that dies within a second of its
            # start (a crash loop) is counted too. The other counters carry on across a
            # restart (the ops server adds up gone processes' files), so this is what shows it.
            metrics.starts.inc()
        tracing = None
        if telemetry.otlp_endpoint:
            tracing = Tracing(
                telemetry.otlp_endpoint,
                telemetry.service_name,
                telemetry.trace_sample_ratio,
                telemetry.otlp_certificate,
                telemetry.otlp_headers,
            )
        # Always there: the query cost reaches the caller even with metrics and tracing off.
        observer = GatewayObserver(metrics, tracing)
        if client is None:
            # A gateway's callers (HTTP, the OpenAI SDKs) cannot tell a wait for a model with
            # no replica requested from a slow model: their calls to it fail at once.
            # Nor can they be given a reply over the gateway's message limit: it is refused
            # unread (`ClientSettings.max_reply_bytes`).
            client_settings = replace(
                settings.client,
                fail_unrequested=True,
                max_reply_bytes=settings.max_message_bytes,
            )
            client = Client(client_settings, observer=observer)
        # Per-client limits count with the stack's other gateway processes, if it has any,
        # and ACL changes made through one are known to the others (its change board), as
        # are the model servers one found hung.
        # So are each model's calls in flight and queued (`quotas.model`); a process run
        # alone keeps its own, without the table's lock.
        table = None
        calls: Counts = LocalCounts()
        open_streams: Counts = LocalCounts()
        models = None
        if settings.shared_slots is not None:
            shared = settings.shared_slots
            table = SlotTable(shared.path, shared.worker, shared.inherited)
            calls, open_streams = SharedCounts(table, "calls"), SharedCounts(table, "streams")
            client.share_findings(table)  # a hung model server, found by one, for all
            models = StackCounts(SharedCounts(table, "models"), SharedCounts(table, "queued"))
        # Calls waiting in a model's queue are counted for the queue gauge (nothing to count
        # with metrics off).
        waits = uncounted if metrics is None else metrics.queues(client.is_serving)
        access = Access(settings.access, client, calls, board=table, models=models, waits=waits)
        tokens = TokenCounter(settings.models)
        streams = StreamSlots(settings.max_streams_per_client, access.identity, open_streams)
        # The stack's token first, if it has one (`StackTokenInterceptor`, inserted below);
        # then reading the request message (it turns the unary handlers the others made into
        # stream-request ones; a call without one goes on, to be refused inside the
        # telemetry, which counts it); then telemetry, so that it sees the status the caller
        # gets; then errors, so that refusals from the access checks become statuses.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            RequestMessageInterceptor(abort, out_of_memory=out_of_memory, inward=malformed),
            TelemetryInterceptor(
                metrics, tracing, client, access, tokens, cost_header=telemetry.cost_header
            ),
            # A request that does not parse, on the OpenAI face: OpenAI's envelope.
            ErrorInterceptor(
                {_OPENAI_SERVICE: report_error}, reply_limit=settings.max_message_bytes
            ),
            AccessInterceptor(access, settings),
        ]
        if settings.stack_token:  # outermost: a call without it reaches none of the others
            interceptors.insert(0, StackTokenInterceptor(settings.stack_token))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # One limit, not gRPC's two: between its soft and hard limits it refuses a
                # share of calls at random.
                ("grpc.max_metadata_size", settings.max_metadata_bytes),
                ("grpc.absolute_max_metadata_size", settings.max_metadata_bytes),
                # Several gateway processes must not silently share one port.
                ("grpc.so_reuseport", 0),
                # Clients' keepalive pings on idle streams and connections (grpc-go's
                # shortest: 10 s), as the cell's servers take them: grpc's default of one per
                # 5 minutes ended a watch straight to this port with GOAWAY too_many_pings.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                *PENDING_CALLS_OPTIONS,
                *HPACK_OPTIONS,
            ],
        )
        add_servicer(
            server,
            gateway_pb2_grpc.add_SaxGatewayServicer_to_server,
            SaxGatewayServicer(client, settings, streams, access),
        )
        add_servicer(
            server,
            openai_pb2_grpc.add_OpenAIGatewayServicer_to_server,
            OpenAIGatewayServicer(client, settings, access, streams, tokens),
        )
        health = HealthReporter(client, settings, streams, metrics)
        add_servicer(server, health_pb2_grpc.add_HealthServicer_to_server, health.servicer)
        enable_reflection(
            server,
            (
                gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"].full_name,
                openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            ),
        )
        try:
            port = server.add_insecure_port(f"{bracketed(settings.host)}:{settings.port}")
        except RuntimeError:  # taken since check_bind: grpc's "Failed to bind" says no more
            raise ListenError(settings.host, settings.port) from None
        await server.start()
        await health.start()
        log.info("gateway serving %s on %s:%d", SERVICE, bracketed(settings.host), port)
        return cls(settings, client, port, metrics, server, health, tracing, table)

    async def drain(self) -> None:
        """Reports NOT_SERVING on grpc.health.v1 (open Watches included) and goes on serving
        calls: the stack in front has begun to drain (SIGUSR1, from `saxgw up|serve`)."""
        await self._health.drain()

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting calls, waits up to ``grace`` seconds for in-flight ones, cleans up."""
        grace = self.settings.grace_period if grace is None else grace
        await self._health.stop()
        stopping = asyncio.ensure_future(self._server.stop(grace))
        # A stream may outlast the grace period. Cut by gRPC at its end, it would look
        # complete over HTTP/1.1 (a cancelled call's status is a trailer Envoy drops): so a
        # moment before, the Sax client closes, and every call still in flight fails
        # UNAVAILABLE, which a stream reports as its last message while it still can.
        await asyncio.wait({stopping}, timeout=calls_grace(grace))
        await self.client.close()
        await stopping
        await self.client.close()  # an admin channel a handler opened since
        if self._table is not None:
            self._table.close()  # every call has ended: nothing holds a slot
        self._flusher.cancel()
        await asyncio.gather(self._flusher, return_exceptions=True)
        if self.metrics is not None:
            self._flush(last=True)  # the last calls' counts, before the process exits
            if self.settings.telemetry.metrics_dir:
                metricsfiles.leave(self.settings.telemetry.metrics_dir)
        if self._tracing is not None:
            await self._tracing.open_spans_ended()
            await asyncio.to_thread(self._tracing.shutdown)  # flushes the last spans

    async def wait(self) -> None:
        """Returns when the server has stopped."""
        await self._server.wait_for_termination()


async def serve(settings: GatewaySettings, *, ready: asyncio.Event | None = None) -> None:
    """Runs a gateway until SIGINT or SIGTERM, then shuts it down gracefully. SIGUSR1 says
    the stack drains: health turns NOT_SERVING, calls are still served."""
    stop, draining = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before start: its log line says it serves
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, draining.set)  # its default action is to exit
    server = await GatewayServer.start(settings)
    drain = asyncio.create_task(_drain_when(draining, server), name="drain")
    # On stdout, for scripts that wait for it; in the log format, so that a JSON log stream
    # (a container's output) holds no plain line.
    logs.print_record(log, f"gateway gRPC listening on {server.address}")
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down; in-flight calls get %.1f s", settings.grace_period)
    drain.cancel()
    await server.stop()


async def _drain_when(draining: asyncio.Event, server: GatewayServer) -> None:
    await draining.wait()
    await server.drain()
