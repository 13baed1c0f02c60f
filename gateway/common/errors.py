"""Sax's status errors, shared by every role: one class per gRPC status code.

Every class carries its ``grpc.StatusCode`` as ``code``, so a caller (the gateway, the cell)
can map any of them back to a status without a table of its own::

    SaxError                       code: UNKNOWN (base; never raised for a known code)
     ├── RequestCancelledError     CANCELLED
     ├── UnknownError              UNKNOWN
     ├── InvalidArgumentError      INVALID_ARGUMENT
     ├── DeadlineExceededError     DEADLINE_EXCEEDED
     ├── NotFoundError             NOT_FOUND
     ├── AlreadyExistsError        ALREADY_EXISTS
     ├── PermissionDeniedError     PERMISSION_DENIED
     ├── ResourceExhaustedError    RESOURCE_EXHAUSTED
     ├── FailedPreconditionError   FAILED_PRECONDITION
     ├── AbortedError              ABORTED
     ├── OutOfRangeError           OUT_OF_RANGE
     ├── UnimplementedError        UNIMPLEMENTED
     ├── InternalError             INTERNAL
     ├── UnavailableError          UNAVAILABLE
     ├── DataLossError             DATA_LOSS
     └── UnauthenticatedError      UNAUTHENTICATED

``from_grpc_error`` is the one place a ``grpc.RpcError`` becomes one of these, and
``storage_failure`` the one place a failure of SAX_ROOT or a cell's fs root does. A Sax admin
server built from upstream source reports every failure as UNKNOWN and keeps the real code only
as the last word of the message ("model /sax/test/foo not found: NotFound"); that word is
recovered here (``from_grpc_error``, ``code_from_text``), and written here for the cell
(``status_details``): one table of Go names serves both directions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from gateway.common.storage import StorageError

FieldViolation = tuple[str, str]


@dataclass(frozen=True)
class Status:
    """A call's outcome, read as upstream's status objects are: ``status.code()``,
    ``status.message()``, ``status.ok()``. ``code()`` is a ``grpc.StatusCode`` (upstream's
    absl codes have the same numbers: ``code().value[0]``)."""

    status_code: grpc.StatusCode
    text: str = ""

    def code(self) -> grpc.StatusCode:
        return self.status_code

    def message(self) -> str:
        return self.text

    def ok(self) -> bool:
        return self.status_code is grpc.StatusCode.OK


class SaxError(Exception):
    """Base class: a failed Sax operation with its gRPC status code."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field_violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.message = message
        # (field, description) pairs, for a google.rpc.BadRequest detail.
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    @property
    def status(self) -> Status:
        """The status, as upstream's ``StatusNotOk`` carries it: ``e.status.code()``."""
        return Status(self.code, self.message)


class RequestCancelledError(SaxError):
    """The call was cancelled (named so as not to shadow ``asyncio.CancelledError``)."""

    code = grpc.StatusCode.CANCELLED


class UnknownError(SaxError):
    """The server gave no usable status code."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(SaxError):
    """A malformed model ID, model path, request field or option."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(SaxError):
    """The caller's deadline passed before the call finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(SaxError):
    """No such cell or model, or the model is not published."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(SaxError):
    """The model is already published."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(SaxError):
    """An ACL refused the caller."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(SaxError):
    """A server is overloaded or a quota is used up."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(SaxError):
    """The cell is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(SaxError):
    """The operation was aborted, typically by a concurrent change."""

    code = grpc.StatusCode.ABORTED


class OutOfRangeError(SaxError):
    """An argument is outside the valid range."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(SaxError):
    """The model or server does not implement the method."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(SaxError):
    """An invariant broke inside a server."""

    code = grpc.StatusCode.INTERNAL


class UnavailableError(SaxError):
    """No admin or model server could be reached (retryable)."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(SaxError):
    """Unrecoverable data loss or corruption."""

    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(SaxError):
    """The caller has no valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[SaxError]] = {
    cls.code: cls
    for cls in (
        RequestCancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}

# Go's codes.Code.String() spellings, which upstream Sax leaves at the end of its messages.
_BY_GO_NAME: dict[str, grpc.StatusCode] = {
    "Canceled": grpc.StatusCode.CANCELLED,
    "Unknown": grpc.StatusCode.UNKNOWN,
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "DeadlineExceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "PermissionDenied": grpc.StatusCode.PERMISSION_DENIED,
    "ResourceExhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "FailedPrecondition": grpc.StatusCode.FAILED_PRECONDITION,
    "Aborted": grpc.StatusCode.ABORTED,
    "OutOfRange": grpc.StatusCode.OUT_OF_RANGE,
    "Unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "Internal": grpc.StatusCode.INTERNAL,
    "Unavailable": grpc.StatusCode.UNAVAILABLE,
    "DataLoss": grpc.StatusCode.DATA_LOSS,
    "Unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
}
# The other way, for the cell; OK never ends an error message, so it is not recovered above.
_GO_NAME: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    **{code: name for name, code in _BY_GO_NAME.items()},
}
# "...: NotFound" (errors wrapped with %w), or "rpc error: code = NotFound desc = ..." (a Go
# status error turned into text by a Go server that wrapped it).
_TRAILING_NAME = re.compile(r"(?:^|[\s:=])([A-Za-z]+)\s*$")
_GO_STATUS_TEXT = re.compile(r"code = ([A-Za-z]+) desc = ")
_DETAILS_KEY = "grpc-status-details-bin"


def error_for_code(
    code: grpc.StatusCode, message: str, *, field_violations: Sequence[FieldViolation] = ()
) -> SaxError:
    """Builds the error class of ``code`` (``UnknownError`` for OK or unmapped codes)."""
    cls = _BY_CODE.get(code, UnknownError)
    return cls(message, field_violations=field_violations)


def go_code_name(code: grpc.StatusCode) -> str:
    """The Go name of a status code (``"NotFound"``), as upstream Sax appends it to messages."""
    return _GO_NAME.get(code, "Unknown")


def status_details(exc: SaxError) -> str:
    """An error's status message as upstream Sax writes it: the message, then ``": <GoName>"``."""
    return f"{exc.message}: {go_code_name(exc.code)}"


# UNAVAILABLE: the replica is unreachable; RESOURCE_EXHAUSTED: it is overloaded; NOT_FOUND:
# it does not (or no longer) have the model loaded. Another replica may do better for each.
# CANCELLED: grpc.aio reports our own cancellations as asyncio.CancelledError, never as an
# RpcError, so a CANCELLED status means the server reset the call (it is shutting down).
#: The codes of a model server's failure that the gateway's client tries again on another
#: replica (client/_failover.py), and direct mode's routes too (launch/direct/_resources.py).
REPLICA_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.CANCELLED,
    }
)


def go_code_names() -> dict[str, grpc.StatusCode]:
    """Each Go name an upstream Sax message may end with, and its code (`code_from_text`): for
    Envoy's copy of the same reading (gateway/launch/_grpc_failures.py)."""
    return dict(_BY_GO_NAME)


def code_from_text(message: str) -> grpc.StatusCode | None:
    """The status code an upstream Sax message carries in its text, if any."""
    trailing = _TRAILING_NAME.search(message)
    if trailing is not None and trailing.group(1) in _BY_GO_NAME:
        return _BY_GO_NAME[trailing.group(1)]
    embedded = _GO_STATUS_TEXT.search(message)
    if embedded is not None:
        return _BY_GO_NAME.get(embedded.group(1))
    return None


#: What an admin that hung mid-save says of a save that ended after another admin took the
#: cell over (UNAVAILABLE, retry): the admin now serving may have read it, so the retry may
#: find the change made, as after a lost reply (`gateway.client._lost_replies`).
SAVED_DURING_TAKEOVER = "another admin server took the cell over during the save"

#: What an admin (upstream's, and this project's cell's) says, UNAVAILABLE, of a publish of a
#: model it is still unloading after an unpublish: "model ID is being unpublished, please
#: retry later". It passes by itself, so clients retry it until their deadline.
BEING_UNPUBLISHED = "is being unpublished"


def asks_for_credentials(code: grpc.StatusCode, message: str) -> bool:
    """Whether a server refused a call for want of credentials (an auth proxy's 401 or 403,
    which grpc reads as these codes), as no Sax admin does: Sax admins ask for none, and end
    their own refusals (an ACL's PERMISSION_DENIED) with the code's Go name. At an admin's
    address (a stale location.proto), such a server is no admin."""
    auth = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    return auth and code_from_text(message) is None


def storage_failure(exc: StorageError, failed: str, storage: str, log: str) -> SaxError:
    """What a caller learns when storage failed it: ``failed`` says what did not happen, in
    its terms ("could not publish /sax/test/lm"), ``storage`` whose storage it was ("the
    storage of cell /sax/test"), ``log`` where its operator reads why ("the admin server's
    log"). Never the path or URL, which are this server's: the storage layer logged them.

    UNAVAILABLE when the storage may recover by itself, so that callers retry. INTERNAL when
    it refused this server (its permissions, a full or read-only disk, a file where a
    directory should be): the server's fault, which no retry mends until its operator acts;
    not PERMISSION_DENIED (the credentials at fault are the server's, not the caller's), nor
    FAILED_PRECONDITION (HTTP 400: nothing in the request is wrong).
    """
    if exc.transient:
        return UnavailableError(f"{failed}: {storage} is unavailable; retry later")
    return InternalError(f"{failed}: {storage} failed; its operator finds why in {log}")


# A deadline grpc enforced itself reads "Deadline Exceeded", or, on a channel without grpc's
# retry layer (client/_channels.py) when the server's cancellation arrives first, "Stream
# removed (Deadline Exceeded)": one event, so one message for the caller.
GRPC_DEADLINE = "Deadline Exceeded"
_DEADLINE_REMOVED = f"Stream removed ({GRPC_DEADLINE})"


def from_grpc_error(exc: grpc.RpcError) -> SaxError:
    """Maps a gRPC error to its ``SaxError`` class; callers ``raise ... from exc``.

    UNKNOWN errors get their real code back from the message text; a ``google.rpc.BadRequest``
    in the status details becomes ``field_violations``.

    It also drops ``exc``'s traceback, which runs through grpc's own frames and so holds the
    call, and a grpc call holds its connection open even after its channel is closed. Errors
    outlive their calls (in a cell's last failure, or in garbage only a full collection frees,
    which an idle process may not run for hours): a hung admin's outage left one connection
    per dropped channel open for good once it resumed. The caller's ``raise`` adds its own.
    """
    exc.__traceback__ = None
    code, message = _code_and_details(exc)
    if code == grpc.StatusCode.UNKNOWN:
        code = code_from_text(message) or code
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and message == _DEADLINE_REMOVED:
        message = GRPC_DEADLINE
    return error_for_code(code, message, field_violations=_field_violations(exc))


def _code_and_details(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    # grpc.RpcError itself has no accessors; every error grpc raises is also a grpc.Call
    # (sync) or an AioRpcError (asyncio), and both have code() and details().
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return code, details if isinstance(details, str) else str(exc)


def _field_violations(exc: grpc.RpcError) -> tuple[FieldViolation, ...]:
    metadata_fn = getattr(exc, "trailing_metadata", None)
    metadata = metadata_fn() if callable(metadata_fn) else None
    for key, value in metadata or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
            violations: list[FieldViolation] = []
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    violations += [(v.field, v.description) for v in bad_request.field_violations]
            return tuple(violations)
        except DecodeError:
            return ()
    return ()
