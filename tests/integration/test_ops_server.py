"""The ops server over a real socket: /metrics in Prometheus text, /livez for liveness probes,
/readyz for readiness probes, nothing else, and Envoy reported down (rather than the scrape
failing) when its admin does not answer."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.common.listen import host_and_port
from gateway.launch.processes import free_port
from gateway.ops import LIVE_PATH, READY_PATH, OpsSettings, start
from gateway.ops._fold import JOURNAL, KINDS, archive_name

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@contextmanager
def _in_thread(server: ThreadingHTTPServer) -> Iterator[str]:
    """``server`` (bound to 127.0.0.1) serving in a thread, by its address, until the block
    ends."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _serving(settings: OpsSettings) -> Iterator[str]:
    """An ops server of ``settings`` serving in a thread, by its base URL."""
    with _in_thread(start(settings)) as address:
        yield f"http://{address}"


@pytest.fixture
def ops_url(tmp_path: Path) -> Iterator[str]:
    dead_envoy = f"127.0.0.1:{free_port()}"
    with _serving(OpsSettings(port=0, metrics_dir=str(tmp_path), envoy_admin=dead_envoy)) as url:
        yield url


def test_metrics_is_prometheus_text_and_reports_envoy_down(ops_url: str) -> None:
    response = httpx.get(ops_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.text.endswith("saxgw_envoy_up 0\n")


def test_envoy_down_is_one_warning_not_one_per_scrape(
    ops_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Each scrape while Envoy's admin did not answer (Envoy restarting, or gone) logged a
    # WARNING: a scraper, or anyone reaching /metrics, wrote the log at its own rate.
    for _ in range(5):
        response = httpx.get(ops_url + "/metrics", timeout=10)
        assert response.text.endswith("saxgw_envoy_up 0\n")
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith("Envoy's stats are unavailable (http://127.0.0.1:")


def _raw(ops_url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly ``headers`` (httpx would add Accept-Encoding and decode)."""
    host, port = ops_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, "/metrics", headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_metrics_are_gzipped_for_a_scraper_that_asks(ops_url: str) -> None:
    # Prometheus sends Accept-Encoding: gzip; the scrape went out as plain text whatever it asked.
    status, headers, body = _raw(ops_url, "GET", {"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"], headers["vary"]) == (
        200,
        "gzip",
        "Accept-Encoding",
    )
    assert int(headers["content-length"]) == len(body)
    assert gzip.decompress(body).endswith(b"saxgw_envoy_up 0\n")
    for refused in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip;q=0"}):
        status, headers, body = _raw(ops_url, "GET", refused)
        assert (status, "content-encoding" in headers) == (200, False), refused
        assert body.endswith(b"saxgw_envoy_up 0\n")


def test_head_answers_as_get_without_the_body_and_other_methods_are_405(ops_url: str) -> None:
    status, headers, body = _raw(ops_url, "HEAD", {})
    assert (status, headers["content-type"], body) == (200, CONTENT_TYPE, b"")
    assert int(headers["content-length"]) > 0
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = _raw(ops_url, method, {})
        assert (status, headers["allow"], body) == (
            405,
            "GET, HEAD",
            b"/metrics takes GET and HEAD\n",
        )


def test_livez_answers_from_the_server_alone(tmp_path: Path) -> None:
    # Envoy's admin accepts connections and never answers (a hung Envoy): a scrape waits on
    # it, a liveness probe must not.
    with socket.create_server(("127.0.0.1", 0)) as hung_envoy:
        envoy_admin = f"127.0.0.1:{hung_envoy.getsockname()[1]}"
        # A live check that waited on Envoy would wait its envoy_timeout: 30 s here, not the
        # default 2 s, so that the probe's own timeout (10 s; 1 s before, against an answer
        # of milliseconds that a loaded host can delay) sits far from both.
        settings = OpsSettings(
            port=0, metrics_dir=str(tmp_path), envoy_admin=envoy_admin, envoy_timeout=30.0
        )
        with _serving(settings) as base:
            response = httpx.get(base + LIVE_PATH, timeout=10)
    assert (response.status_code, response.text) == (200, "ok\n")


@contextmanager
def _envoy_admin(replies: dict[str, tuple[int, str]]) -> Iterator[str]:
    """A stand-in for Envoy's admin answering each path (with its query) in ``replies``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = replies.get(self.path, (404, "invalid path\n"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    with _in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as address:
        yield address


def _readyz(envoy_admin: str) -> tuple[int, str]:
    with _serving(OpsSettings(port=0, envoy_admin=envoy_admin)) as base:
        response = httpx.get(base + READY_PATH, timeout=10)
    return response.status_code, response.text


def _members(healthy: int, total: int) -> str:
    """Envoy's /stats lines for the gateway cluster's members."""
    return (
        f"cluster.gateway_grpc.membership_healthy: {healthy}\n"
        f"cluster.gateway_grpc.membership_total: {total}\n"
    )


STATS = "/stats?filter=^cluster\\.gateway_grpc\\.membership_(healthy|total)$"


@pytest.mark.parametrize(
    ("ready", "stats", "expected"),
    [
        (
            (200, "LIVE\n"),
            _members(1, 2),
            (200, "ok: 1 of 2 gateways healthy\n"),
        ),
        (
            (200, "LIVE\n"),
            _members(0, 2),
            (
                503,
                "no gateway is healthy (0 of 2 pass their gRPC health check: the cell is "
                "unreachable, or the gateways are down)\n",
            ),
        ),
        # run-envoy.sh's first step on SIGTERM, /healthcheck/fail, makes /ready say DRAINING
        # (and /healthz 503): the pod leaves the Service while Envoy drains.
        (
            (503, "DRAINING\n"),
            _members(2, 2),
            (503, "Envoy is not live (DRAINING: starting, or draining after SIGTERM)\n"),
        ),
    ],
)
def test_readyz_answers_as_envoys_healthz_from_its_admin(
    ready: tuple[int, str], stats: str, expected: tuple[int, str]
) -> None:
    with _envoy_admin({"/ready": ready, STATS: (200, stats)}) as admin:
        assert _readyz(admin) == expected


def test_readyz_fails_when_envoys_admin_does_not_answer() -> None:
    admin = f"127.0.0.1:{free_port()}"
    status, body = _readyz(admin)
    assert status == 503
    assert body.startswith(f"Envoy's admin at {admin} does not answer (")


@contextmanager
def _envoy_cut_short() -> Iterator[str]:
    """An Envoy admin that dies while it answers: each reply promises more bytes than it
    sends, ends inside a sample line, and the connection closes."""
    reply = b'HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n# TYPE envoy_x counter\nenvoy_x{a="b'

    def serve(listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(65_536)
                connection.sendall(reply)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_an_envoy_admin_that_dies_while_it_answers_is_envoy_down(tmp_path: Path) -> None:
    # Envoy killed (its watchdog, the OOM killer) in the middle of its stats: urllib raised
    # http.client.IncompleteRead, no OSError, so the whole scrape failed 500, the gateways'
    # metrics with it, where it says saxgw_envoy_up 0; /readyz dropped its connection with
    # no answer and logged a traceback.
    with _envoy_cut_short() as admin:
        settings = OpsSettings(port=0, metrics_dir=str(tmp_path), envoy_admin=admin)
        with _serving(settings) as base:
            scraped = httpx.get(base + "/metrics", timeout=10)
            ready = httpx.get(base + READY_PATH, timeout=10)
    assert scraped.status_code == 200, scraped.text
    assert "envoy_x" not in scraped.text  # no half line
    assert scraped.text.endswith("saxgw_envoy_up 0\n")
    assert ready.status_code == 503
    assert ready.text.startswith(f"Envoy's admin at {admin} does not answer (")


def test_other_paths_are_not_found(ops_url: str) -> None:
    assert httpx.get(ops_url + "/", timeout=10).status_code == 404
    assert httpx.get(ops_url + "/stats", timeout=10).status_code == 404


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "prom.localhost", "[::1]", "localhost.", "prom.localhost."]
)
def test_a_loopback_ops_port_answers_loopback_names(ops_url: str, host: str) -> None:
    port = ops_url.rsplit(":", 1)[1]
    response = httpx.get(ops_url + "/metrics", headers={"host": f"{host}:{port}"}, timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_loopback_ops_port_refuses_other_host_names(ops_url: str, host: str) -> None:
    # A page at http://evil.example:8889 whose name then points at 127.0.0.1 (DNS
    # rebinding) read the metrics: client ids, model names, call counts.
    port = ops_url.rsplit(":", 1)[1]
    response = httpx.get(ops_url + "/metrics", headers={"host": f"{host}:{port}"}, timeout=10)
    assert response.status_code == 421
    assert "DNS rebinding" in response.text
    assert "saxgw_" not in response.text


def test_every_line_of_a_json_logging_ops_process_is_json(tmp_path: Path) -> None:
    # Its "ops server: URL" line was plain text among the JSON ones (`saxgw up --log-format
    # json` writes it to ops.log): a log shipper that parses each line met one that did not.
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "ops", f"--port={port}", "--log-format=json"]
    proc = subprocess.Popen(
        [*argv, f"--metrics-dir={tmp_path}", f"--envoy-admin=127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)  # Envoy's is down: logged
    assert scrape.status_code == 200
    # Scrapers that leave before their reply (a timed-out scrape, a reset connection): each
    # was a 25-line plain-text traceback from socketserver, at every such scrape.
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as gone:
            gone.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=10).text == "ok\n"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    records = [json.loads(line) for line in [first, *rest.splitlines()]]  # each one parses
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert [r for r in records if r["level"] not in ("INFO", "WARNING")] == []
    assert records[0]["message"] == f"ops server: http://127.0.0.1:{port}/metrics"
    assert any(r["message"].startswith("Envoy's stats are unavailable") for r in records)


def test_an_ops_process_removes_only_its_own_stray_files(tmp_path: Path) -> None:
    # It removed every *.new file of --metrics-dir as it started and at each scrape: a
    # volume's other files (an editor's, another tool's) went with a fold's leftovers.
    others = ["notes.new", "counter_archive.new", "fold.journal.new.new", "x.db.new.bak"]
    for name in others:
        (tmp_path / name).write_text("not the ops server's\n")
    strays = [f"{archive_name(kind)}.new" for kind in KINDS] + [f"{JOURNAL}.new"]
    for name in strays:  # a fold killed before its commit leaves these
        (tmp_path / name).write_bytes(b"")
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "ops", f"--port={port}", "--log-format=json"]
    proc = subprocess.Popen([*argv, f"--metrics-dir={tmp_path}"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "ops server: " in proc.stdout.readline()
    left = {p.name for p in tmp_path.iterdir()}
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert not set(strays) & left  # removed as it started
    assert set(others) <= left
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.name in others} == {
        name: "not the ops server's\n" for name in others
    }


def test_ops_with_nothing_to_scrape_is_a_usage_error() -> None:
    # It started, and its /metrics was an empty 200: no saxgw_envoy_up, no warning.
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "ops", "--port", str(port)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        "saxgw ops: error: give --metrics-dir, --envoy-admin or both: with neither, /metrics is "
        "empty"
    )
    assert done.stderr.startswith("usage: saxgw ops ")


def test_a_connection_that_sends_no_request_is_closed(tmp_path: Path) -> None:
    # Each connection has a thread of its own: one that never finished its request held its
    # thread and descriptor for good (300 idle connections: 300 threads, until the client left).
    settings = OpsSettings(port=0, metrics_dir=str(tmp_path), request_timeout=0.5)
    with _serving(settings) as base:
        address = host_and_port(base.removeprefix("http://"))
        idle = socket.create_connection(address, timeout=5)
        partial = socket.create_connection(address, timeout=5)
        partial.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        with idle, partial:
            for held in (idle, partial):
                assert held.recv(1024) == b""  # closed by the server, not by the 5 s here
        # A scrape still answers, as before.
        response = httpx.get(base + LIVE_PATH, timeout=5)
        assert response.text == "ok\n"


def test_a_request_sent_a_byte_at_a_time_is_closed_at_its_deadline(tmp_path: Path) -> None:
    # The timeout bounded each read alone: a byte every few seconds held the connection, and
    # its thread, for as long as the client went on (3,500 such: 3,400 threads, 128 MB).
    settings = OpsSettings(port=0, metrics_dir=str(tmp_path), request_timeout=1.0)
    with _serving(settings) as base:
        address = host_and_port(base.removeprefix("http://"))
        with socket.create_connection(address, timeout=10) as trickle:
            started = time.monotonic()
            closed = False
            for byte in b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                try:
                    trickle.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.2)  # each read well within the 1 s
                readable, _, _ = select.select([trickle], [], [], 0)
                if readable and trickle.recv(1024) == b"":
                    closed = True
                    break
            took = time.monotonic() - started
        # Closed at its deadline (1 s; the cutter looks every 0.25 s), before the whole
        # request (43 bytes, 8.6 s) could come.
        assert closed and took < 5, took
        # Many connections at once are each served (a cap would let idle ones refuse the
        # probes), and a connection that came in a burst is not left to SYN retries
        # (socketserver's backlog of 5: 256 connections took 42 s to be accepted).
        held = [socket.create_connection(address, timeout=10) for _ in range(300)]
        try:
            response = httpx.get(base + LIVE_PATH, timeout=5)
            assert response.text == "ok\n"
        finally:
            for conn in held:
                conn.close()


def test_an_ops_process_on_ipv6_loopback_serves_and_names_its_url_in_brackets(
    tmp_path: Path,
) -> None:
    # `saxgw up --ops-listen ::1` stopped the whole stack: the server was IPv4 only ("Address
    # family for hostname not supported").
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "ops", "--host=::1", f"--port={port}"]
    proc = subprocess.Popen(
        [*argv, "--log-format=json", f"--metrics-dir={tmp_path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        first = json.loads(proc.stdout.readline())
        assert first["message"] == f"ops server: http://[::1]:{port}/metrics"
        url = f"http://[::1]:{port}{LIVE_PATH}"
        assert httpx.get(url, timeout=10).text == "ok\n"  # Host: [::1]:port, a loopback name
        refused = httpx.get(url, headers={"host": f"evil.example:{port}"}, timeout=10)
        assert refused.status_code == 421
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
