"""How `saxgw` reports a failed call: its status, the fields at fault, and a hint.

``report`` prints what the gateway (or Envoy, or grpc) said as the HTTP API's error body with
--json, else as text; ``hint`` picks the advice from `gateway.cli._hints` and fills it in::

    saxgw: NOT_FOUND: model /sax/test/nosuch is not published
    hint: list published models with `saxgw ls /sax/test`; publish with ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, TextIO

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.cli._channel import gateway_target, uses_tls
from gateway.cli._hints import (
    CELL_NOT_FOUND,
    CELL_NOT_FOUND_DETAILS,
    GATEWAY_UNIMPLEMENTED,
    HINTS,
    INVALID_UNNAMED,
    NOT_CONNECTED,
    NOT_GRPC,
    NOT_GRPC_DETAILS,
    ROLE_DENIED,
    ROLE_DENIED_DETAILS,
    STORAGE_DETAILS,
    STORAGE_FAILED,
    UNIMPLEMENTED_BY_CELL,
    WATCH_ENDED,
    by_details,
    tls_hint,
)
from gateway.cli._output import json_text, to_dict
from gateway.common.logs import printable

_DETAILS_KEY = "grpc-status-details-bin"


def report(exc: grpc.RpcError, args: argparse.Namespace, err: TextIO) -> int:
    """Prints a failed call's status, the fields at fault and a hint; returns the exit status."""
    code: grpc.StatusCode = exc.code()
    message = exc.details() or ""
    envoy = _envoy_body(message)
    if envoy is not None:
        message = envoy["message"]
    violations = field_violations(exc)
    advice = hint(
        code, args, fields_named=bool(violations), details=message, request_id=_request_id(exc)
    )
    if getattr(args, "json", False):  # as the HTTP API's error body, with the hint beside it
        status = _status(exc) or status_pb2.Status(code=code.value[0], message=message)
        try:
            body = envoy or to_dict(status)
        except TypeError:  # a detail of a type this build does not know: leave details out
            body = {"code": status.code, "message": status.message, "details": []}
        print(json_text({**body, "hint": advice}, err), file=err)
        return 1
    lines = [f"saxgw: {code.name}: {message or 'no details'}"]
    # A violation the message already says (the gateway's usual "field: why") is not repeated.
    lines += [
        f"  {field}: {why}"
        for field, why in violations
        if why != message and f"{field}: {why}" not in message
    ]
    lines.append("hint: " + advice)
    # Each line as text: a server's words in it (a model server's error, passed on) may hold
    # an escape sequence for the terminal, or a line break that writes a line of its making.
    print("\n".join(map(printable, lines)), file=err)
    return 1


def report_input(message: str, hint_text: str, args: argparse.Namespace, err: TextIO) -> int:
    """Prints input saxgw refused before any call, shaped as a failed call's report."""
    if args.json:
        # Shaped as a failed call's error: INVALID_ARGUMENT, as the gateway would answer it.
        error = {"code": grpc.StatusCode.INVALID_ARGUMENT.value[0], "message": message}
        print(json_text({**error, "details": [], "hint": hint_text}, err), file=err)
    else:
        print(f"saxgw: {message}\nhint: {hint_text}", file=err)
    return 1


def _envoy_body(details: str) -> dict[str, Any] | None:
    """The JSON body of a reply Envoy made itself (no credentials, a role or rate refused, a
    body too large), which reaches a gRPC client as the status message: the HTTP API's
    error body, whose ``message`` is the one to show."""
    if not details.startswith("{"):
        return None
    try:
        body = json.loads(details)
    except json.JSONDecodeError:
        return None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and "code" in body:
        return body
    return None


def _trailer(exc: grpc.RpcError, key: str) -> str | bytes | None:
    """The value of a failed call's trailer ``key``, if it has one."""
    # grpc's trailers are (key, value) named tuples; types-grpcio types them as a class that
    # does not unpack, which they do.
    trailers: Sequence[tuple[str, str | bytes]] = exc.trailing_metadata() or ()  # type: ignore[assignment]
    return next((value for name, value in trailers if name == key), None)


def _status(exc: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call's trailers carry, if any."""
    value = _trailer(exc, _DETAILS_KEY)
    return status_pb2.Status.FromString(value) if isinstance(value, bytes) else None


def _request_id(exc: grpc.RpcError) -> str | None:
    """The call's x-request-id: its google.rpc.RequestInfo detail's, else the header's (a
    failure grpc reported with no details)."""
    status = _status(exc)
    for detail in status.details if status else ():
        info = error_details_pb2.RequestInfo()
        if detail.Unpack(info) and info.request_id:
            return str(info.request_id)
    found = _trailer(exc, "x-request-id")
    return found if isinstance(found, str) else None


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations in a status' details, if any."""
    status = _status(exc)
    violations = []
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations += [(v.field, v.description) for v in bad.field_violations]
    return violations


def hint(
    code: grpc.StatusCode,
    args: argparse.Namespace,
    *,
    fields_named: bool = True,
    details: str = GATEWAY_UNIMPLEMENTED,
    request_id: str | None = None,
) -> str:
    """What to try next after a call failed with ``code`` (and ``details``); a hint that sends
    the reader to the logs names ``request_id``, which finds the call there."""
    text = by_details(code, details) or HINTS[code]
    if code == grpc.StatusCode.INVALID_ARGUMENT and not fields_named and text is HINTS[code]:
        text = INVALID_UNNAMED
    if code == grpc.StatusCode.UNIMPLEMENTED and details != GATEWAY_UNIMPLEMENTED:
        text = UNIMPLEMENTED_BY_CELL
    if code == grpc.StatusCode.NOT_FOUND and CELL_NOT_FOUND_DETAILS.match(details):
        text = CELL_NOT_FOUND
    storage = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
    if storage and STORAGE_DETAILS.search(details):
        text = STORAGE_FAILED
    if code == grpc.StatusCode.PERMISSION_DENIED and details == ROLE_DENIED_DETAILS:
        text = ROLE_DENIED
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and getattr(args, "command", "") == "watch":
        text = WATCH_ENDED
    if any(marker in details for marker in NOT_GRPC_DETAILS):
        text = NOT_GRPC
    if code == grpc.StatusCode.UNAVAILABLE and NOT_CONNECTED in details:
        text = tls_hint(details, tls=uses_tls(args)) or text
    where_request = (
        f" (and Envoy's access log) for x-request-id {request_id}, which names this call"
        if request_id
        else ""
    )
    target = getattr(args, "id", None) or "ID"
    parts = target.strip("/").split("/")
    cell = "/" + "/".join(parts[:2]) if len(parts) >= 2 else "/sax/<cell>"
    return text.format(
        gateway=gateway_target(args),
        id=target,
        cell=cell,
        command=getattr(args, "command", "COMMAND"),
        where_request=where_request,
    )
