"""gRPC types and facts shared by the cell and the gateway: the servicer context every method
here takes, and what a CancelledError from grpc.aio means.

Typed by types-grpcio; generic in the request and response types only for a stream's
``read``/``write``, which no servicer here uses, so both are ``Any`` as in the servicer
stubs mypy-protobuf generates (their context type is ``ServicerContext[Any, Any]`` too,
so our methods accept exactly what the generated base classes promise).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeAlias

import grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class WithMetadata(Protocol):
    """What `metadata_value` reads of a call (a grpc.aio context has it)."""

    def invocation_metadata(self) -> Any: ...


def metadata_value(context: WithMetadata, key: str) -> str | None:
    """The first value of ``key`` in a call's metadata (a text key: not ``-bin``), or None."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return str(value)
    return None


def cancelled_by_caller() -> bool:
    """Whether a CancelledError is the running task's own cancellation (its caller went away).

    grpc.aio also raises CancelledError in a call whose channel was closed under it: that one
    is a failure of the call (the router fails it over; a handler must answer it)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
