"""Hooks through which an embedding program watches the client's Sax calls.

The client knows nothing of metrics or tracing; the gateway passes an ``Observer`` subclass to
``Client(settings, observer=...)`` and turns these events into both. The base class does
nothing, and the client skips the per-attempt bookkeeping entirely when it is in use.

    class Logging(Observer):
        def attempt(self, target, method, address, number):
            print("calling", method, "on", address)
            return NO_ATTEMPT
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

import grpc

_R = TypeVar("_R")
Metadata = Sequence[tuple[str, str | bytes]]
# What a call ended with: a sync call's tuple, or grpc.aio's Metadata (both give pairs).
Trailers = Collection[tuple[str, str | bytes]]

#: Trailing metadata in which upstream model servers report what a query cost, as a decimal
#: integer of accelerator (TPU) milliseconds; absent when the server measured nothing.
QUERY_COST_KEY = "query_cost_v0"


class Attempt:
    """One RPC sent to a Sax server: what to send with it, and how it ended."""

    __slots__ = ()

    #: Extra request metadata for this RPC (e.g. a W3C ``traceparent``), or None.
    metadata: Metadata | None = None

    def end(self, code: grpc.StatusCode, trailing: Trailers | None) -> None:
        """The RPC ended with ``code`` (OK included) and these trailers (None if unknown)."""


#: The attempt of an observer that watches nothing.
NO_ATTEMPT = Attempt()


class Observer:
    """Receives the client's events; every method is a no-op unless overridden.

    ``target`` is a model ID for data calls and a cell ID for admin calls; ``method`` is the
    Sax RPC (``"lm.Generate"``, ``"admin.List"``).
    """

    def attempt(self, target: str, method: str, address: str, number: int) -> Attempt:
        """An RPC is about to be sent to ``address``; ``number`` counts from 1 within a call."""
        return NO_ATTEMPT

    def failover(self, model_id: str, address: str, code: grpc.StatusCode) -> None:
        """A replica failed with a code another replica may not; the call goes on."""

    def retry(self, model_id: str) -> None:
        """Every replica tried in this round failed: the call backs off and goes round again."""

    def addresses_changed(self, model_id: str, addresses: Sequence[str]) -> None:
        """The admin reported a new set of serving addresses for ``model_id``."""

    def model_gone(self, model_id: str) -> None:
        """``model_id`` is no longer published: the admin answered its watch NOT_FOUND, or
        this client unpublished it. (Published again, it is reported serving anew.)"""


async def observed(attempt: Attempt, call: grpc.aio.UnaryUnaryCall[Any, _R]) -> _R:
    """Awaits a unary grpc.aio ``call``, telling ``attempt`` how it ended and what it cost."""
    try:
        response = await call
    except grpc.aio.AioRpcError as exc:
        attempt.end(exc.code(), exc.trailing_metadata())
        raise
    except BaseException:
        attempt.end(grpc.StatusCode.CANCELLED, None)
        raise
    attempt.end(grpc.StatusCode.OK, await call.trailing_metadata())
    return response


def query_cost_ms(trailing: Trailers | None) -> int | None:
    """The accelerator milliseconds a model server reported in ``trailing``, if any."""
    for key, value in trailing or ():
        if key == QUERY_COST_KEY:
            try:
                return int(value)
            except ValueError:
                return None
    return None
