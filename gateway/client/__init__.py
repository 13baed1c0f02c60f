"""A pure-Python asyncio client for Saxml (Sax) cells, speaking Sax's own gRPC protocol.

    from gateway.client import CallOptions, Client, ClientSettings

    async with Client(ClientSettings(sax_root="gs://bucket/sax-root")) as client:
        print(await client.lm_generate("/sax/test/lm", "Hello", CallOptions(timeout=10)))

``gateway.client.sax`` is a synchronous facade shaped like upstream's Python ``sax`` module.

Role: the Sax client. May import ``gateway.common`` only; never the cell, the service, the
launchers or the CLI.
"""

from __future__ import annotations

from gateway.client._client import Client
from gateway.client._observer import Attempt, Observer, query_cost_ms
from gateway.client._types import (
    ADMIN_UNREACHABLE_AFTER_S,
    CallOptions,
    CellStats,
    ClientSettings,
    ModelDetail,
    ServerTypeStat,
    StreamItem,
)
from gateway.common.errors import (
    AbortedError,
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RequestCancelledError,
    ResourceExhaustedError,
    SaxError,
    Status,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    error_for_code,
    from_grpc_error,
)
from gateway.common.results import Box

__all__ = [
    "ADMIN_UNREACHABLE_AFTER_S",
    "AbortedError",
    "AlreadyExistsError",
    "Attempt",
    "Box",
    "CallOptions",
    "CellStats",
    "Client",
    "ClientSettings",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "ModelDetail",
    "NotFoundError",
    "Observer",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "SaxError",
    "ServerTypeStat",
    "Status",
    "StreamItem",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "error_for_code",
    "from_grpc_error",
    "query_cost_ms",
]
