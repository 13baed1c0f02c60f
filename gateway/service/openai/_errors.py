"""Errors of the OpenAI face, in OpenAI's envelope ``{"error": {message, type, param, code}}``.

The call still fails with its real gRPC code (Envoy maps it to the HTTP status the OpenAI SDKs
act on: 400, 401, 403, 404, 409, 429, 500, 503, 504; the Python SDK retries 408, 409, 429 and
5xx), so metrics and gRPC callers see the same failure as on SaxGateway. The envelope travels
in the ``x-openai-error`` trailing metadata, which a trailers-only gRPC response turns into a
header; Envoy's Lua on the OpenAI route moves it into the body. A 429 also carries
``retry-after``, which the SDKs honour, and a 501 ``x-should-retry: false``. Its message and
``param`` are SaxGateway's, cut to fit a header as they are (`gateway.service._errors.clip`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc

from gateway.common.rpc import Context
from gateway.service._errors import (
    RETRY_AFTER_SECONDS,
    cost_metadata,
    reporting,
    request_id,
    to_status,
    violations,
)

ENVELOPE_KEY = "x-openai-error"
NOT_RETRIED = frozenset({grpc.StatusCode.UNIMPLEMENTED})
"""Codes whose HTTP status (501) the SDKs retry, as they retry every 5xx, though no retry can
succeed: sent with ``x-should-retry: false``, which the Python and Node SDKs obey."""

_C = grpc.StatusCode
# OpenAI's error ``type`` (and, where OpenAI has one, ``code``) for every gRPC code.
KINDS: dict[grpc.StatusCode, tuple[str, str | None]] = {
    _C.OK: ("server_error", None),  # never raised; present so the table covers every code
    _C.CANCELLED: ("request_cancelled", None),
    _C.UNKNOWN: ("server_error", None),
    _C.INVALID_ARGUMENT: ("invalid_request_error", None),
    _C.DEADLINE_EXCEEDED: ("timeout_error", "timeout"),
    _C.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    _C.ALREADY_EXISTS: ("conflict_error", None),
    _C.PERMISSION_DENIED: ("permission_error", None),
    _C.RESOURCE_EXHAUSTED: ("rate_limit_error", "rate_limit_exceeded"),
    _C.FAILED_PRECONDITION: ("invalid_request_error", None),
    _C.ABORTED: ("conflict_error", None),
    _C.OUT_OF_RANGE: ("invalid_request_error", None),
    _C.UNIMPLEMENTED: ("invalid_request_error", "unsupported"),
    _C.INTERNAL: ("server_error", None),
    _C.UNAVAILABLE: ("service_unavailable_error", None),
    _C.DATA_LOSS: ("server_error", None),
    _C.UNAUTHENTICATED: ("authentication_error", "invalid_api_key"),
}


def error_fields(code: grpc.StatusCode, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for a failure with ``code``, but its message: ``type``,
    ``param`` (the field at fault, if known) and ``code``. Envoy's Lua answers a failure grpc
    itself reported with the same (gateway/launch/_openai_errors.py)."""
    kind, openai_code = KINDS[code]
    if code == _C.NOT_FOUND:
        # Every OpenAI call names one model: whatever was not found (the model, its cell)
        # is that model's, as OpenAI reports it.
        param = param or "model"
    return {"type": kind, "param": param, "code": openai_code}


def reply_headers(code: grpc.StatusCode) -> tuple[tuple[str, str], ...]:
    """The headers the SDKs act on, for a failure with ``code``."""
    if code == _C.RESOURCE_EXHAUSTED:
        return (("retry-after", str(RETRY_AFTER_SECONDS)),)
    if code in NOT_RETRIED:
        return (("x-should-retry", "false"),)
    return ()


def envelope(
    exc: BaseException, request_id: str = ""
) -> tuple[grpc.StatusCode, dict[str, Any], bytes]:
    """The code that reports ``exc``, its OpenAI error object, and the serialized
    google.rpc.Status (for gRPC callers), which names ``request_id`` as SaxGateway's do."""
    code, message, status = to_status(exc, request_id)
    named = violations(exc)
    error = {"message": message, **error_fields(code, named[0][0] if named else None)}
    return code, {"error": error}, status.SerializeToString()


async def abort(context: Context, exc: BaseException) -> NoReturn:
    """Ends the call with ``exc``'s code, the envelope in ``x-openai-error``."""
    code, body, status = envelope(exc, request_id(context))
    metadata: list[tuple[str, str | bytes]] = [
        # ensure_ascii: metadata values must be printable ASCII.
        (ENVELOPE_KEY, json.dumps(body, ensure_ascii=True)),
        ("grpc-status-details-bin", status),
        *reply_headers(code),
        *cost_metadata(),
    ]
    await context.abort(code, body["error"]["message"], trailing_metadata=tuple(metadata))


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Self = TypeVar("_Self")


def unary(
    method: Callable[[_Self, _Req, Context], Awaitable[_Resp]],
) -> Callable[[_Self, _Req, Context], Awaitable[_Resp]]:
    """Reports any failure of a unary method in OpenAI's envelope."""

    @wraps(method)
    async def call(self: _Self, request: _Req, context: Context) -> _Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.BaseError:  # an abort, or a status its caller left too soon for
            raise
        except Exception as exc:
            await abort(context, exc)

    return call


def streaming(
    method: Callable[[_Self, _Req, Context], AsyncIterator[_Resp]],
) -> Callable[[_Self, _Req, Context], AsyncIterator[_Resp]]:
    """Reports a failure of a streaming method before its first message in OpenAI's envelope
    (an HTTP status and JSON body); later failures are the method's to report in-band."""
    return reporting(method, abort)
