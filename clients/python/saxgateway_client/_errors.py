"""The exceptions a call raises: one class per gRPC status code, made in one place.

SaxGatewayError                 code, message, details (google.protobuf.Any), request_id,
                                retry_after
├── BadRequestError             INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE;
│                               .field_violations from the google.rpc.BadRequest detail
├── NotFoundError               NOT_FOUND
├── AlreadyExistsError          ALREADY_EXISTS
├── AbortedError                ABORTED
├── PermissionDeniedError       PERMISSION_DENIED
├── UnauthenticatedError        UNAUTHENTICATED
├── ResourceExhaustedError      RESOURCE_EXHAUSTED
├── UnavailableError            UNAVAILABLE
├── DeadlineExceededError       DEADLINE_EXCEEDED
├── CancelledError              CANCELLED
├── UnimplementedError          UNIMPLEMENTED
└── ServerError                 UNKNOWN, INTERNAL, DATA_LOSS
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"
# gRPC's Retry-After, in milliseconds (gRFC A6), which the gateway sends beside retry-after.
_PUSHBACK_KEY = "grpc-retry-pushback-ms"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (``model``, ``extra_inputs[x]``) and why."""

    field: str
    description: str


class SaxGatewayError(Exception):
    """A failed call: the gRPC status code, its message, and its typed details;
    ``retry_after``: the seconds the gateway asks a caller to wait before trying again (on a
    RESOURCE_EXHAUSTED it may mend: a rate, calls in flight, an overloaded model), else None."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: tuple[any_pb2.Any, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[SaxGatewayError], tuple[object, ...]]:
        # Rebuilt from what it was made of, not from str(self) alone (Exception's way, which
        # this __init__ does not take): pickle (a process pool's worker) and copy use it.
        return type(self), (self.code, self.message, self.details, self.retry_after)

    @property
    def request_id(self) -> str | None:
        """The call's ID (its x-request-id, which the gateway's and Envoy's logs name), from
        its google.rpc.RequestInfo detail; None without one."""
        for detail in self.details:
            info = error_details_pb2.RequestInfo()
            if detail.Unpack(info) and info.request_id:
                return str(info.request_id)
        return None


class BadRequestError(SaxGatewayError):
    """The request was invalid; ``field_violations`` names the fields."""

    @property
    def field_violations(self) -> tuple[FieldViolation, ...]:
        found = []
        for detail in self.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                found += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        return tuple(found)


class NotFoundError(SaxGatewayError):
    """The model (or cell) is not published."""


class AlreadyExistsError(SaxGatewayError):
    """The model is already published."""


class AbortedError(SaxGatewayError):
    """The model changed under an update (HTTP 409): read it again and decide again; the
    caller's to handle, as an AlreadyExistsError is, not a failure of the server."""


class PermissionDeniedError(SaxGatewayError):
    """The caller may not use this model."""


class UnauthenticatedError(SaxGatewayError):
    """The call carried no valid credentials."""


class ResourceExhaustedError(SaxGatewayError):
    """A quota or size limit was hit."""


class UnavailableError(SaxGatewayError):
    """The gateway or the Sax cell could not be reached; retrying may help."""


class DeadlineExceededError(SaxGatewayError):
    """The call's deadline expired first."""


class CancelledError(SaxGatewayError):
    """The call was cancelled."""


class UnimplementedError(SaxGatewayError):
    """The model does not serve this method."""


class ServerError(SaxGatewayError):
    """The server failed (UNKNOWN, INTERNAL, DATA_LOSS)."""


_BY_CODE: dict[grpc.StatusCode, type[SaxGatewayError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: BadRequestError,
    grpc.StatusCode.OUT_OF_RANGE: BadRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
    grpc.StatusCode.ABORTED: AbortedError,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_for(
    code: grpc.StatusCode,
    message: str,
    details: tuple[any_pb2.Any, ...] = (),
    retry_after: float | None = None,
) -> SaxGatewayError:
    """The exception for a status code (OK is not an error, and has no class)."""
    return _BY_CODE[code](code, message, details, retry_after)


#: What a call raises once its client is closed (made after, or in flight at, the close), as
#: the sync client's grpc says it: CANCELLED, where grpc raised ValueError or UsageError.
CLOSED = "Channel closed!"


def closed_error() -> SaxGatewayError:
    """The error of a call on a closed client."""
    return error_for(grpc.StatusCode.CANCELLED, CLOSED)


def from_rpc_error(error: grpc.RpcError) -> SaxGatewayError:
    """The exception for a failed call, details read from its trailing metadata."""
    # Sync calls' errors hold grpc's (key, value) named tuples, grpc.aio's hold plain pairs;
    # types-grpcio types the former as a class that does not unpack, which it does.
    trailers: Sequence[tuple[str, str | bytes]] = error.trailing_metadata() or ()  # type: ignore[assignment]
    message = error.details() or ""
    reply = _envoy_reply(message)
    wait = _retry_after(trailers)
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            # Envoy gives its own refusals a Status of their own too, whose message is the
            # same JSON body: the message is the body's either way.
            status = status_pb2.Status.FromString(value)
            text = reply[0] if reply else message
            return error_for(error.code(), text, tuple(status.details), wait)
    return error_for(error.code(), *(reply or (message, ())), wait)


def _retry_after(trailers: Sequence[tuple[str, str | bytes]]) -> float | None:
    """The wait a failure's ``grpc-retry-pushback-ms`` asks for, in seconds; None for none,
    or for a negative one (no retry mends it: a body over the limit)."""
    for key, value in trailers:
        if key == _PUSHBACK_KEY:
            try:
                wait = int(value)
            except ValueError:
                return None
            return wait / 1000 if wait >= 0 else None
    return None


def _envoy_reply(message: str) -> tuple[str, tuple[any_pb2.Any, ...]] | None:
    """The message and details of a refusal Envoy made itself (no credentials, a role or a
    rate refused, a body too large): a gRPC caller gets the HTTP API's JSON error body as
    the status message, ``{"code", "message", "details": [RequestInfo]}``."""
    if not message.startswith("{"):
        return None
    try:
        body = json.loads(message)
    except json.JSONDecodeError:
        return None
    if not (isinstance(body, dict) and isinstance(body.get("message"), str)):
        return None
    details = []
    for detail in body.get("details") or ():
        try:
            details.append(json_format.ParseDict(detail, any_pb2.Any()))
        except (json_format.ParseError, TypeError):
            continue  # a detail type this client does not know: left out
    return body["message"], tuple(details)


def from_status(status: status_pb2.Status) -> SaxGatewayError:
    """The exception for a google.rpc.Status, such as a stream's in-band final error. A code
    this client does not know (a newer server's, or OK, which no error should carry) is
    UNKNOWN, as gRPC itself takes a status code it does not know."""
    code = _BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.OK:
        code = grpc.StatusCode.UNKNOWN
    return error_for(code, status.message, tuple(status.details))
