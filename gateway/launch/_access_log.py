"""The access log's ``grpc_status`` (docs/operations.md): the gRPC code a request ended with, as
its client got it, whoever answered. Envoy's own GRPC_STATUS_NUMBER is wrong twice here:

- A call the gateway failed: the transcoder turns its grpc-status into an HTTP status, from
  which Envoy would derive another code (404 -> 12).
- A reply Envoy made itself (413, 404 for an unknown path, 429...): null, or a code derived
  from the HTTP status, where the client got the code its local reply mapper put in the body
  (gateway/launch/_replies.py).

Both come from the header_to_metadata filter (`status_rules`), which keeps the gateway's
grpc-status, and the code each local reply mapper tags its reply with (``CODE_HEADER``), in
dynamic metadata. Anything else is GRPC_STATUS_NUMBER: the status in the reply's trailers (0
for a success), or null for a request that is no gRPC call (/openapi.json, /healthz).

No filter is added to any request's path: the decision is one COALESCE in the access log's
formatter.
"""

from __future__ import annotations

import json

from gateway.launch._replies import CODE_HEADER

#: Where header_to_metadata keeps the gateway's or a local reply's code.
METADATA = ("sax", "grpc_status")


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


def grpc_status_format() -> str:
    """The access log's ``grpc_status`` command: the gateway's or a local reply's code, else
    the status in the reply's trailers."""
    operators: list[object] = [
        {"command": "DYNAMIC_METADATA", "param": ":".join(METADATA)},
        "GRPC_STATUS_NUMBER",
    ]
    return "%COALESCE(" + json.dumps({"operators": operators}) + ")%"
