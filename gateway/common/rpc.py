"""gRPC types and facts shared by the cell and the gateway: the servicer context every method
here takes, and what a CancelledError or a refused status from grpc.aio means.

Typed by types-grpcio; generic in the request and response types only for a stream's
``read``/``write``, which no servicer here uses, so both are ``Any`` as in the servicer
stubs mypy-protobuf generates (their context type is ``ServicerContext[Any, Any]`` too,
so our methods accept exactly what the generated base classes promise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_S = TypeVar("_S")


class WithMetadata(Protocol):
    """What `metadata_value` reads of a call (a grpc.aio context has it)."""

    def invocation_metadata(self) -> Any: ...


class _LastRead:
    """The call whose metadata `call_metadata` read last, with that metadata: one pair, set
    at once, so that a thread that logs in a call's context (its request ID) can never pair
    one call with another's metadata."""

    __slots__ = ("pair",)

    def __init__(self) -> None:
        self.pair: tuple[object, Any] = (None, ())


_last_read = _LastRead()


def call_metadata(context: WithMetadata) -> Any:
    """A call's metadata, ``(key, value)`` pairs. grpc.aio builds it anew at every
    ``invocation_metadata()`` (a tuple of named tuples, its text decoded: ~15 µs for the nine
    headers Envoy sends), and a call's checks read it some ten times as it starts (client,
    deadline, path, ...), one after the other: the last call's is kept, so that those reads
    cost one. Only the last, by identity: one kept per open stream was ~1 KB each, and the
    context held keeps its id from being reused by another call."""
    read, metadata = _last_read.pair
    if read is not context:
        metadata = context.invocation_metadata() or ()
        _last_read.pair = (context, metadata)
    return metadata


def metadata_value(context: WithMetadata, key: str) -> str | None:
    """The first value of ``key`` in a call's metadata (a text key: not ``-bin``), or None."""
    for name, value in call_metadata(context):
        if name == key:
            return str(value)
    return None


def cancelled_by_caller() -> bool:
    """Whether a CancelledError is the running task's own cancellation (its caller went away).

    grpc.aio also raises CancelledError in a call whose channel was closed under it: that one
    is a failure of the call (the router fails it over; a handler must answer it)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def status_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is grpc refusing to send a call's status because grpc had already
    ended the call with one of its own, which the handler never learns: a message grpc
    could not take (compressed and inflating past the receive limit: RESOURCE_EXHAUSTED;
    corrupt, or flagged compressed with no grpc-encoding: INTERNAL) reads as no message at
    all, and the status answering that finds the call over. By name: grpc's Cython module
    exports the class, but has no typed stubs."""
    return type(exc).__name__ == "ExecuteBatchError"


def add_servicer(
    server: grpc.aio.Server, add_to_server: Callable[[_S, Any], None], servicer: _S
) -> None:
    """``add_to_server(servicer, server)`` (a generated ``add_*Servicer_to_server``), with the
    servicer's methods served through grpc's generic handlers only.

    The generated code also registers each method with grpc's core ("registered methods").
    A grpc.aio server then keeps one pending request per registered method and, for every call
    it takes, waits on all of them at once (``asyncio.wait``): ~20 µs of the event loop's time
    a call with the gateway's 42 methods, against ~5 µs for the one generic request, which
    finds a method's handler with a dict lookup (BENCHMARKS.md, run 27)."""
    add_to_server(servicer, _GenericOnly(server))


class _GenericOnly:
    """A server that passes generic handlers on and drops registered ones (`add_servicer`)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Dropped: the same handlers came through `add_generic_rpc_handlers`."""


#: Request metadata of a Sax client's probe of a replica that may hang (a Modelet GetStatus,
#: `gateway/client/_hung.py`): the embedded cell's model servers do not take it for their
#: admin's poll, which would hide an admin that stopped polling them.
PROBE_KEY = "x-saxgw-probe"
PROBE_METADATA = ((PROBE_KEY, "1"),)

PUSHBACK_KEY = "grpc-retry-pushback-ms"
"""gRPC's own ``retry-after`` (gRFC A6): a gRPC client whose service config retries the code
waits this many milliseconds before its next attempt, instead of its policy's backoff (0.1 s,
0.2 s, ...: four attempts spent in 0.7 s against an overload that lasts a second); a
negative value stops its retries. gRPC libraries read no ``retry-after``."""
