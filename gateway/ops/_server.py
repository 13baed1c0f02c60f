"""A small threaded HTTP server for ``/metrics``; scrapes are rare, so simple is enough.

``/livez`` answers 200 from the server alone (no scrape, no Envoy): the liveness probe of a
pod's ops container and the supervisor's watchdog ask it whether this process answers.
``/readyz`` answers 200 or 503 as Envoy's ``/healthz`` would (gateway/ops/_ready.py), over
plain HTTP even when Envoy's public listener wants TLS: the pod's readiness probe.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.common import metricsfiles
from gateway.common.failurelog import FailureLog
from gateway.common.listen import ListenError, bracketed, family
from gateway.common.logs import print_record
from gateway.common.loopback import answers, domains
from gateway.ops import _fold
from gateway.ops._ready import ADMIN_ERRORS, readiness

log = logging.getLogger(__name__)

#: Answered 200 by the server itself: whether the process answers, for liveness probes.
LIVE_PATH = "/livez"
#: 200 or 503 as Envoy's /healthz (with --envoy-admin): the stack's readiness, in plain HTTP.
READY_PATH = "/readyz"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REFUSAL = (
    b"the ops port listens on loopback and answers only loopback host names such as localhost "
    b"and 127.0.0.1 (a guard against DNS rebinding); to scrape it from elsewhere, set "
    b"--ops-listen\n"
)


@dataclass(frozen=True, kw_only=True)
class OpsSettings:
    """Where the ops server listens and what it adds up."""

    host: str = "127.0.0.1"
    port: int = 8889
    """0 picks a free port."""
    metrics_dir: str | None = None
    """The gateway processes' shared metrics directory (``TelemetrySettings.metrics_dir``)."""
    envoy_admin: str | None = None
    """``host:port`` of Envoy's admin interface, whose ``/stats/prometheus`` is appended."""
    envoy_timeout: float = 2.0
    """Seconds to wait for Envoy's stats before answering without them."""
    request_timeout: float = 10.0
    """Seconds a connection may wait for the client (its request, each send of the reply)
    before it is closed: each connection holds a thread, so one that sent no request held it,
    and its descriptor, until the client left (as Envoy's ``limits.request_headers_timeout``)."""


# Envoy's admin not answering (Envoy restarting, or gone) fails every scrape until it is
# back: a WARNING each was the scrapers' rate of lines (anyone's who reaches /metrics).
_ENVOY_DOWN = FailureLog(log)


def _envoy_stats(settings: OpsSettings) -> bytes | None:
    url = f"http://{settings.envoy_admin}/stats/prometheus"
    try:
        with urllib.request.urlopen(url, timeout=settings.envoy_timeout) as response:
            body: bytes = response.read()
    except ADMIN_ERRORS as exc:  # a reply cut short too: never half a line in the scrape
        _ENVOY_DOWN.failed(("reading", url), f"Envoy's stats are unavailable ({url}): {exc}")
        return None
    _ENVOY_DOWN.succeeded(("reading", url), f"reading Envoy's stats ({url})")
    return body


#: Gauge modes whose processes' values are added up.
_SUMS = frozenset({"sum", "livesum"})


class _Collector(MultiProcessCollector):
    """The gateways' files added up, but for empty ones: a file a gateway has just created
    (and not yet sized), or one a full directory left empty, would fail the whole scrape.

    A gauge sample that is NaN is left out: a gateway sets a gone model's gauges to NaN
    (`GatewayMetrics.forget_model`), as prometheus_client cannot delete a value from its
    file. Where the most recent value of any live process wins (``livemostrecent``), a NaN
    that wins leaves the series out; where processes' values are added up (``livesum``),
    each process's NaN is left out before the sum, or one process's gone model (NaN + 2 is
    NaN) hid the calls another process still has queued for it."""

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self._path, "*.db"))
        nonempty = [f for f in files if _size(f) > 0]
        # merge(), in its two steps (prometheus_client 0.26's), NaN taken out between them.
        read: dict[str, Metric] = self._read_metrics(nonempty)  # type: ignore[no-untyped-call]
        for metric in read.values():
            if metric.type == "gauge" and getattr(metric, "_multiprocess_mode", "") in _SUMS:
                metric.samples = [s for s in metric.samples if not math.isnan(s.value)]
        metrics: Iterable[Metric] = self._accumulate_metrics(read, True)  # type: ignore[no-untyped-call]
        for metric in metrics:
            if metric.type == "gauge":
                metric.samples = [s for s in metric.samples if not math.isnan(s.value)]
            yield metric


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


#: One scrape at a time in this process: a scrape that waited out the directory's lock (see
#: `metricsfiles.scraping`) reads without it, and must not read another's fold half done.
_one_scrape = threading.Lock()


def _gateway_metrics(directory: str) -> bytes:
    """The gateway processes' files added up, having folded those of gone processes."""
    registry = CollectorRegistry()
    _Collector(registry, path=directory)  # type: ignore[no-untyped-call]
    with _one_scrape, metricsfiles.scraping(directory) as alone:
        gone = metricsfiles.forget_gone(directory)
        if alone:  # else a flush holds the lock (stopped): fold at a later scrape
            _fold.fold(directory, gone)
        return generate_latest(registry)


def _finish_fold(directory: str | None) -> None:
    """At start: a fold the last ops server was killed in is finished before it is read."""
    if not directory or not os.path.isdir(directory):
        return
    with _one_scrape, metricsfiles.scraping(directory) as alone:
        if alone:
            try:
                _fold.finish(directory)
            except OSError:  # the first scrape tries again, and fails if it must
                log.exception("cannot finish the metrics fold journaled in %s", directory)


def scrape(settings: OpsSettings) -> bytes:
    """The whole exposition: gateway processes, Envoy, and whether Envoy answered."""
    parts = []
    if settings.metrics_dir:
        # A directory gone (unmounted, cleaned away) has no gateway metrics to add up; the
        # collector would raise at every scrape.
        if os.path.isdir(settings.metrics_dir):
            parts.append(_gateway_metrics(settings.metrics_dir))
        # Full or read-only, it costs gateways their metrics (kept in memory, unexported),
        # not their calls: what is missing above, and why, must show.
        writable = metricsfiles.writable(settings.metrics_dir)
        parts.append(
            b"# HELP saxgw_metrics_dir_writable Whether the gateways' metrics directory takes "
            b"a new file (0: full, read-only or gone; gateway metrics are missing).\n"
            b"# TYPE saxgw_metrics_dir_writable gauge\n"
            + b"saxgw_metrics_dir_writable %d\n"
            % writable
        )
    if settings.envoy_admin:
        envoy = _envoy_stats(settings)
        parts.append(envoy or b"")
        parts.append(
            b"# HELP saxgw_envoy_up Whether Envoy's admin answered this scrape.\n"
            b"# TYPE saxgw_envoy_up gauge\n"
            + (b"saxgw_envoy_up 1\n" if envoy is not None else b"saxgw_envoy_up 0\n")
        )
    return b"".join(p if p.endswith(b"\n") or not p else p + b"\n" for p in parts)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (``gzip;q=0`` refuses it)."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer on its host's address family (the base class is IPv4 only, and
    ``--ops-listen ::1`` failed: "Address family for hostname not supported"), each of whose
    connections has ``request_timeout`` seconds from its accept for its whole request. The
    handler's socket timeout bounds each read alone: a request sent a byte every few seconds
    held its connection and thread (~26 KB) for as long as it went on (3,500 such: 3,400
    threads, 128 MB). No cap on connections: one would let 256 idle ones refuse the probes."""

    # socketserver's listen backlog is 5: connections that came faster than the accept loop
    # took them waited for the kernel's SYN retries (1 s, 3 s, ...): 256 took 42 s.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        request_timeout: float,
    ) -> None:
        self.address_family = family(address[0])
        self._request_timeout = request_timeout
        self._lock = threading.Lock()
        self._awaited: dict[socket.socket, float] = {}  # connections whose request is due
        self._closed = threading.Event()  # before the bind, whose failure closes the server
        super().__init__(address, handler)
        threading.Thread(target=self._cut_late_requests, name="ops-deadlines", daemon=True).start()

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._awaited[request] = time.monotonic() + self._request_timeout
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.received(request)
        super().shutdown_request(request)

    def received(self, request: socket.socket) -> None:
        """The request on ``request`` has come whole: its deadline no longer applies."""
        with self._lock:
            self._awaited.pop(request, None)

    def _cut_late_requests(self) -> None:
        while not self._closed.wait(min(1.0, self._request_timeout / 4)):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, due in self._awaited.items() if due <= now]
                for conn in late:
                    del self._awaited[conn]
            for conn in late:  # its handler's read returns, and its thread ends
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        if self.server_address[0] == "::":  # every address of both families, as Envoy's
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request: object, client_address: object) -> None:
        """socketserver printed a traceback to stderr for whatever ended a request's thread,
        25 lines of plain text in a JSON log, at each scrape or probe whose client left before
        its reply (a scrape past its timeout, a connection reset). A client that left is
        none of the server's faults: DEBUG; anything else an ERROR record of the log."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("the client at %s left before its reply: %r", client_address, error)
            return
        log.exception("a request from %s failed", client_address)


def start(settings: OpsSettings) -> ThreadingHTTPServer:
    """Binds the server (not yet serving); ``server_address`` tells the port; `ListenError`
    if it cannot. A fold of metrics files its predecessor was killed in is finished first
    (gateway/ops/_fold.py).

    On loopback it answers loopback Host names only, as Envoy's listener does
    (gateway/edge/_hosts.py): a web page could otherwise read the metrics (client ids,
    model names) by DNS rebinding."""
    names = domains(settings.host, ())
    _finish_fold(settings.metrics_dir)
    was_ready: dict[str, bool] = {}  # what /readyz last answered, to log its changes

    class Handler(BaseHTTPRequestHandler):
        # The socket's timeout: a request line or header that does not come in time, or a
        # reply the client does not read, ends the connection (and its thread).
        timeout = settings.request_timeout

        def parse_request(self) -> bool:
            parsed = super().parse_request()  # which reads the headers
            server.received(self.connection)  # the request has come: the reply's time is its own
            return parsed

        def do_GET(self) -> None:
            if names is not None and not answers(self.headers.get("Host"), names):
                self._reply(421, REFUSAL)
                return
            path = self.path.split("?")[0]
            if path == LIVE_PATH:
                self._reply(200, b"ok\n")
                return
            if path == READY_PATH and settings.envoy_admin:
                ready, why = readiness(settings.envoy_admin, settings.envoy_timeout)
                if was_ready.get("ready") != ready:  # each change once, not every probe
                    was_ready["ready"] = ready
                    log.info("readiness: %s", why)
                self._reply(200 if ready else 503, why.encode() + b"\n")
                return
            if path != "/metrics":
                self._reply(404, b"not found; try /metrics\n")
                return
            try:
                body, headers = scrape(settings), {"Vary": "Accept-Encoding"}
            except Exception as exc:  # a 500 says the scrape failed; a dropped connection not
                log.exception("a scrape failed")
                self._reply(500, f"the scrape failed ({exc!r}); see the ops log\n".encode())
                return
            # Prometheus asks for gzip: a scrape of a busy gateway is ~100 KB of text that
            # compresses tenfold.
            if _accepts_gzip(self.headers.get("Accept-Encoding", "")):
                body, headers["Content-Encoding"] = gzip.compress(body, compresslevel=1), "gzip"
            self._reply(200, body, CONTENT_TYPE, headers)

        do_HEAD = do_GET  # _reply leaves out the body

        def _not_allowed(self) -> None:
            self._reply(405, b"/metrics takes GET and HEAD\n", headers={"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

        def _reply(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)  # one line per scrape would drown the real logs

    try:
        server = _Server((settings.host, settings.port), Handler, settings.request_timeout)
    except OSError as exc:  # socket.gaierror too: a --host that does not resolve
        raise ListenError.from_os_error(settings.host, settings.port, exc) from None
    server.daemon_threads = True
    return server


def serve(settings: OpsSettings) -> None:
    """Serves until SIGINT or SIGTERM."""
    server = start(settings)
    stop = threading.Event()

    def shutdown(*_: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, shutdown)
    host, port = server.server_address[:2]
    # A record in the process's log format: a JSON-logging ops server writes JSON lines only.
    print_record(log, f"ops server: http://{bracketed(str(host))}:{port}/metrics")
    try:
        server.serve_forever()
    finally:
        server.server_close()
