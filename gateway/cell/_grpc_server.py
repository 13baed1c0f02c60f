"""Starting and stopping a grpc.aio server: one small unit shared by the admin and model servers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway.cell._errors import CellStartError, abort, unavailable
from gateway.common.errors import status_details
from gateway.common.intercept import Streaming, Unary, WrappingInterceptor
from gateway.common.request_message import RequestMessageInterceptor

#: Seconds in-flight calls get to finish when a server stops.
STOP_GRACE = 1.0
#: ... of which the last this many (at most half) are left for the calls still running to end
#: UNAVAILABLE (`_Stopping`), before grpc would cancel them. 0.2 s was too little on a busy
#: host: the event loop came back after grpc's own cancel, which logs a traceback per call.
_END_CALLS_BEFORE = 0.4

#: How a stopping admin ends the calls still running (WatchLoc long polls, mostly): in Sax's
#: words, as its other answers.
ADMIN_STOPPING = status_details(unavailable("the server is stopping"))
#: How a stopping model server ends them: in grpc's own words at the end of a stop's grace,
#: UNAVAILABLE "Cancelling all calls", as upstream's model servers (Python grpc servers) end
#: the streams that outlast it. In Sax's words, the cut stream of a replica that went away
#: read as the model's own failure of it, and reached callers as "the server is stopping":
#: which server, they could not tell.
MODEL_SERVER_STOPPING = "Cancelling all calls"

_OPTIONS = [
    # Long polls (WatchLoc) and streams sit idle for a while; keep their connections alive.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.so_reuseport", 0),
    # Images and audio can exceed gRPC's default 4 MiB: no limit here. Upstream's model
    # servers keep that default (grpc.aio.server() with no options) and refuse a larger
    # request, RESOURCE_EXHAUSTED, as docs/cell.md says.
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


class _Stopping(WrappingInterceptor):
    """Ends the calls still running near the end of a stop's grace period UNAVAILABLE, the
    server's own answer. grpc.aio cancels them at its end itself, and then prints a traceback
    for each ("Exception not handled by _handle_exceptions", CancelledError) to stderr: one
    per open stream (or admin long poll) at every restart."""

    def __init__(self, details: str) -> None:
        super().__init__()
        self._details = details
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def end_calls(self) -> None:
        self._stopping = True
        for task in self._running:
            task.cancel()

    async def _refuse(self, context: Any) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, self._details)

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        async def call(request: Any, context: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise  # the caller left
                await self._refuse(context)
            finally:
                self._running.discard(task)

        return call

    def wrap_streaming(self, method: str, behavior: Streaming) -> Streaming:
        if not inspect.isasyncgenfunction(behavior):  # one that writes with context.write()
            return self.wrap_unary(method, behavior)  # type: ignore[arg-type,return-value]

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                # Closed with this one: left to the garbage collector, a handler whose caller
                # went away could go on decoding for a while.
                async with contextlib.aclosing(behavior(request, context)) as replies:
                    async for reply in replies:
                        yield reply
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                await self._refuse(context)
            finally:
                self._running.discard(task)

        return stream


_stopping: weakref.WeakKeyDictionary[grpc.aio.Server, _Stopping] = weakref.WeakKeyDictionary()


def new_server(stopping: str) -> grpc.aio.Server:
    """A server whose stop ends the calls still running UNAVAILABLE with the status message
    ``stopping`` (`_Stopping`): `ADMIN_STOPPING` or `MODEL_SERVER_STOPPING`."""
    # A call whose request stream ends without its message, or whose message does not parse,
    # is answered INVALID_ARGUMENT: grpc.aio would leave the first open until the caller's
    # deadline (for ever without one), and answer the second UNKNOWN with a logged traceback.
    checks = RequestMessageInterceptor(abort, refuse_unparsed=True)
    ends_calls = _Stopping(stopping)
    server = grpc.aio.server(interceptors=[checks, ends_calls], options=_OPTIONS)
    _stopping[server] = ends_calls
    return server


async def stop(server: grpc.aio.Server, grace: float) -> None:
    """Stops ``server``: no new calls; those in flight get ``grace`` seconds, and the ones
    still running a moment before its end are ended UNAVAILABLE (`_Stopping`)."""
    stopped = asyncio.ensure_future(server.stop(grace))
    await asyncio.wait({stopped}, timeout=grace - min(_END_CALLS_BEFORE, grace / 2))
    if not stopped.done():
        _stopping[server].end_calls()
    await stopped


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
