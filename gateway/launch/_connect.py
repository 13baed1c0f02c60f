"""The Connect protocol (connectrpc.com: `buf curl`'s default, Connect-ES's
createConnectTransport), which this port does not serve, refused so that a Connect client
prints why: its calls name a method's gRPC path, and the transcoder answered them 404 "Could not
resolve /saxgateway.v1.SaxGateway/GetInfo to a method", for a method that exists.

A Connect client reads an error only in Connect's own shape: a unary call's as a JSON body whose
``code`` is a name (`_replies` maps the template's 415 for it), a stream's as the stream's last
message (an "end-stream" frame: flag 2, its length, JSON) in an HTTP 200, since a client takes
any other status of a stream for an error of that status alone (`unknown: HTTP status 415`).
"""

from __future__ import annotations

import base64
import json
import struct

import grpc

NOT_CONNECT = (
    "the Connect protocol is not served here: call this method over gRPC or grpc-web (buf curl"
    " --protocol grpc, or grpcweb; Connect-ES: createGrpcTransport or createGrpcWebTransport),"
    " or over HTTP/JSON at its route (GET /openapi.json lists them)"
)
#: Connect names a code as gRPC does, in lower case.
CODE = grpc.StatusCode.UNIMPLEMENTED.name.lower()

_END_STREAM = 0b10


def end_stream() -> str:
    """A Connect stream's last message, failing with `CODE` and `NOT_CONNECT`, in base64 (a
    direct response's ``inline_bytes``)."""
    error = json.dumps({"error": {"code": CODE, "message": NOT_CONNECT}}).encode()
    return base64.b64encode(struct.pack(">BI", _END_STREAM, len(error)) + error).decode()
