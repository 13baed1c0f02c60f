"""The access log's ``grpc_status`` (docs/operations.md): the gRPC code a request ended with, as
its client got it, whoever answered. Envoy's own GRPC_STATUS_NUMBER is wrong four ways here:

- A call the gateway failed: the transcoder turns its grpc-status into an HTTP status, from
  which Envoy would derive another code (404 -> 12).
- A reply Envoy made itself (413, 404 for an unknown path, 429...): null, or a code derived
  from the HTTP status, where the client got the code its local reply mapper put in the body
  (gateway/launch/_replies.py).
- A call the client abandoned before its end (an HTTP/1.1 connection closed mid-stream, an
  HTTP/2 RST_STREAM): UNKNOWN, Envoy's reading of a 200 without a status, or null before any
  reply, where gRPC itself records CANCELLED. But an OpenAI stream whose client closed the
  connection at its last event, `data: [DONE]` (the SDKs do, often before the status
  arrives), was answered in full: OK.
- A grpc-web call whose status came in trailers (every one that sent a message: successes,
  streams that failed half-way): UNKNOWN too, since the grpc_web filter moves the trailers
  into the body before the log reads them.

The first two come from the header_to_metadata filter (`status_rules`), which keeps the
gateway's grpc-status, and the code each local reply mapper tags its reply with
(``CODE_HEADER``), in dynamic metadata; the fourth from two Lua filters on the gRPC paths
(`cost_header` on unary calls' route, `grpc_status` on the streams' and the OpenAI service's,
envoy/envoy.yaml.tmpl), which put a trailer's grpc-status in the same metadata before grpc_web
sees it; `grpc_status`, on the OpenAI HTTP paths too, puts OK there as `data: [DONE]`
passes. The third is a CEL expression over Envoy's response code details. Anything else is
GRPC_STATUS_NUMBER: the status in the reply's trailers (0 for a success), or null for a
request that is no gRPC call (/openapi.json, /healthz). Envoy's span tags the same code
(``grpc.status_code``, gateway/launch/envoy.py). A code the edge changes after
header_to_metadata read it (`_grpc_failures`: grpc's INTERNAL for a binary header that is
not base64, which the client gets as INVALID_ARGUMENT) is written over it there.

The third takes no filter on any request's path: the decision is one COALESCE in the access
log's formatter (an OpenAI HTTP stream pays for `grpc_status`, a Lua coroutine as long as it
lasts and a look at each message's last bytes, as its gRPC twin already did). Its CEL step
runs when the metadata is absent (the status came in trailers, successes included).
Measured in a bare Envoy answering 200s: reading the response flags first, it cost under 1 us
of Envoy's CPU a request, within the noise; reading every request's details string instead
cost about 2 us.
"""

from __future__ import annotations

import json

import grpc

from gateway.launch._replies import CODE_HEADER
from gateway.service._streams import HTTP_METHOD_HEADER
from gateway.service.openai._responses import DONE

#: Where header_to_metadata keeps the gateway's or a local reply's code.
METADATA = ("sax", "grpc_status")
#: Where the `cost_header` and `grpc_status` Lua filters keep the cost trailer they read.
COST_METADATA = ("sax", "query_cost_ms")

#: Envoy's response code details for a request its client gave up: the connection closed
#: (flag DC) or, over HTTP/2, the stream reset (flag DR). Details, not flags: DR also marks
#: the stream Envoy itself resets for headers over the limit, which no client cancelled.
CLIENT_GAVE_UP = ("downstream_remote_disconnect", "http2.remote_reset")
#: The start of Envoy's response code details for a reply cut by its upstream (a gateway that
#: died or reset the stream) after its headers went out: Envoy resets the client's stream
#: (RST_STREAM INTERNAL_ERROR, which gRPC clients raise as INTERNAL) or, over HTTP/1.1, closes
#: the connection mid-body. No trailers came, so Envoy's own reading of the status was the 200
#: already sent, as UNKNOWN.
UPSTREAM_CUT = "upstream_reset_after_response_started"

_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]


def status_rules() -> list[dict[str, object]]:
    """header_to_metadata's ``response_rules``: a reply's grpc-status as the gateway sent it
    (a failed call's, before the transcoder turns it into an HTTP status), and a local
    reply's ``CODE_HEADER``, which it removes."""
    namespace, key = METADATA
    into = {"metadata_namespace": namespace, "key": key, "type": "NUMBER"}
    return [
        {"header": "grpc-status", "on_header_present": into, "remove": False},
        {"header": CODE_HEADER, "on_header_present": into, "remove": True},
    ]


def _cancelled(nothing: str) -> str:
    """CEL: CANCELLED for a request its client gave up, INTERNAL for a reply its upstream cut
    after it began, else ``nothing``, which COALESCE passes over. A request without response
    flags (every success) is answered by the first comparison: the details string is read
    only for the others."""
    details = ", ".join(f"'{d}'" for d in CLIENT_GAVE_UP)
    gave_up = f"response.code_details in [{details}]"
    cut = f"response.code_details.startsWith('{UPSTREAM_CUT}')"
    either = f"{gave_up} ? {_CANCELLED} : ({cut} ? {_INTERNAL} : {nothing})"
    return f"response.flags == 0u ? {nothing} : ({either})"


def stream_done() -> str:
    """The ``grpc_status`` Lua filter's ``DONE``: the bytes an OpenAI stream ends with (a Lua
    string), after which its client has the whole answer and may close the connection."""
    return json.dumps(DONE.decode())


def grpc_status_format(*, text: bool = False) -> str:
    """The access log's ``grpc_status`` command: the gateway's or a local reply's code, else
    CANCELLED for a call the client gave up, INTERNAL for one its upstream cut mid-reply, else
    the status in the reply's trailers; nothing for a request that is no gRPC call.

    ``text``: the same as a string, for Envoy's span (its ``grpc.status_code`` tag). COALESCE
    passes over a null where it formats typed values (the log's JSON), and there takes an
    empty string for an answer; formatting text, it passes over an empty string, and takes
    CEL's null for one (the text "NULL"), a code for /openapi.json."""
    operators: list[object] = [
        {"command": "DYNAMIC_METADATA", "param": ":".join(METADATA)},
        {"command": "TYPED_CEL", "param": _cancelled("''" if text else "null")},
        "GRPC_STATUS_NUMBER",
    ]
    return "%COALESCE(" + json.dumps({"operators": operators}) + ")%"


def stream_cost_format() -> str:
    """The access log's ``stream_query_cost_ms`` command: the cost trailer the gateway sent,
    else, for a grpc-web call, whose trailers grpc_web moves into the body before the log
    reads them, the trailer as a Lua filter read it on its way (metrics counted a grpc-web
    stream's cost, the log had it nowhere)."""
    operators = [
        {"command": "TRAILER", "param": "X-SAX-QUERY-COST-MS"},
        {"command": "DYNAMIC_METADATA", "param": ":".join(COST_METADATA)},
    ]
    return "%COALESCE(" + json.dumps({"operators": operators}) + ")%"


def method_format() -> str:
    """The access log's ``method`` command: the client's HTTP method, which the transcoder
    replaces with POST (gateway/launch/_methods.py), else the request's own for a request
    refused before the filter that keeps it ran. Cut to 32 characters, as any field a client
    chooses."""
    operators = [
        {"command": "REQ", "param": HTTP_METHOD_HEADER},
        {"command": "REQ", "param": ":METHOD"},
    ]
    return "%COALESCE(" + json.dumps({"operators": operators}) + "):32%"
