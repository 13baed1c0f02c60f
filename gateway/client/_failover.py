"""Which failures of a data call another replica may fix, and what a failing call has tried.

A replica that is unreachable, overloaded, shutting down or without the model is skipped
for the next one (and, unreachable or shutting down, marked down for a moment); any other
failure is the call's answer. The router (`_router.py`) records each failed attempt here and
raises what `Retry.failed` says cannot be helped::

    retry = failed(retry, table, address, exc)  # raises unless another replica may help
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from gateway.client._admin import backoff_delays
from gateway.client._locations import AddressTable
from gateway.common.errors import (
    GRPC_DEADLINE,
    DeadlineExceededError,
    SaxError,
    from_grpc_error,
)

# The router's logger, as before these lines moved here: a filter set for it still applies.
_log = logging.getLogger("gateway.client._router")

# UNAVAILABLE: the replica is unreachable; RESOURCE_EXHAUSTED: it is overloaded; NOT_FOUND:
# it does not (or no longer) have the model loaded. Another replica may do better for each.
# CANCELLED: grpc.aio reports our own cancellations as asyncio.CancelledError, never as an
# RpcError, so a CANCELLED status means the server reset the call (it is shutting down).
_SERVER_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.CANCELLED,
    }
)
# Codes after which a replica is skipped for a moment.
_DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


class Retry:
    """What a failing call has tried so far."""

    __slots__ = ("delays", "last", "tried")

    def __init__(self) -> None:
        self.tried: list[str] = []
        self.last: SaxError | None = None
        self.delays: Iterator[float] = backoff_delays()

    def failed(self, table: AddressTable, address: str, exc: grpc.aio.AioRpcError) -> None:
        """Records a failed attempt; raises the error if another replica cannot help."""
        error = call_error(table.model_id, exc)
        if error.code not in _SERVER_RETRY_CODES or _too_large(error):
            raise error from exc
        error.__cause__ = exc
        if error.code in _DOWN_CODES:
            table.mark_down(address)
        _log.debug("%s on %s: %s", table.model_id, address, error)
        self.tried.append(address)
        self.last = error


def call_error(model_id: str, exc: grpc.RpcError) -> SaxError:
    """A model server call's failure as its caller gets it. A deadline that grpc enforced
    during the call reads "Deadline Exceeded", naming nothing: it names the call, as one
    that passes between attempts does (`Deadline.timeout`)."""
    error = from_grpc_error(exc)
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and error.message == GRPC_DEADLINE:
        return DeadlineExceededError(f"call to {model_id} exceeded its deadline")
    return error


def failed(
    retry: Retry | None, table: AddressTable, address: str, exc: grpc.aio.AioRpcError
) -> Retry:
    """Records a failed attempt (the bookkeeping exists from the first failure on)."""
    retry = retry or Retry()
    retry.failed(table, address, exc)
    return retry


CLIENT_CLOSED = grpc.aio.AioRpcError(
    grpc.StatusCode.UNAVAILABLE,
    grpc.aio.Metadata(),
    grpc.aio.Metadata(),
    details="the Sax client was closed during the call: its owner is stopping",
)
"""A call cut, or refused, by `Router.close`."""


def closed_under(address: str) -> grpc.aio.AioRpcError:
    """A call cut by the closing of its channel, as a failed attempt. The pool closes a
    replica's channel (after a grace period) once the replica has left the model's address
    set, as a hung server does when the admin gives up on it; the call then goes to a replica
    that is still in the set, as it would had the server refused it."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"the connection to {address} was closed under the call",
    )


def _too_large(error: SaxError) -> bool:
    # gRPC reports an oversized message as RESOURCE_EXHAUSTED too, but unlike an overloaded
    # server, no other replica and no retry will take it.
    return error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in error.message
