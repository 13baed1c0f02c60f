"""Starting and stopping a grpc.aio server: one small unit shared by the admin and model servers."""

from __future__ import annotations

import grpc

from gateway.cell._errors import CellStartError, abort
from gateway.common.request_message import RequestMessageInterceptor

#: Seconds in-flight calls get to finish when a server stops.
STOP_GRACE = 1.0

_OPTIONS = [
    # Long polls (WatchLoc) and streams sit idle for a while; keep their connections alive.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.so_reuseport", 0),
    # Images and audio can exceed gRPC's default 4 MiB; like Sax's servers, set no limit.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # Calls that arrive before the server asks grpc for the next one wait in grpc's queue,
    # whose defaults (1,000; hard limit 3,000) cancel a burst of thousands of streams.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    # ...and are cancelled after 30 s there by default: a burst a loaded server takes longer
    # than that to start must still start (each call's own deadline still applies).
    ("grpc.server_max_unrequested_time_in_server", 300),
]


def new_server() -> grpc.aio.Server:
    # A call whose request stream ends without its message, or whose message does not parse,
    # is answered INVALID_ARGUMENT: grpc.aio would leave the first open until the caller's
    # deadline (for ever without one), and answer the second UNKNOWN with a logged traceback.
    checks = RequestMessageInterceptor(abort, refuse_unparsed=True)
    return grpc.aio.server(interceptors=[checks], options=_OPTIONS)


_BUSY = "is another process using it? choose another port"


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    """Binds host:port (0: a free port) and returns the port; CellStartError (one line from
    the process, not a traceback) if it cannot, mostly because another process holds it."""
    try:
        bound: int = server.add_insecure_port(f"{_bracket(host)}:{port}")
    except RuntimeError as exc:
        raise CellStartError(f"cannot listen on {host}:{port} ({_BUSY}): {exc}") from exc
    if bound == 0:
        raise CellStartError(f"cannot listen on {host}:{port} ({_BUSY})")
    return bound


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def address(host: str, port: int) -> str:
    return f"{_bracket(host)}:{port}"
