"""The replies Envoy makes itself (`_replies`), as grpc-web clients read them: HTTP 200 and
the grpc-status and grpc-message a native gRPC client gets, in the headers of a reply with no
body (grpc-web's trailers-only form).

Envoy answers a gRPC request's local reply that way itself (the mapper's grpc-status, the body,
the reply's plain text, as grpc-message), but a grpc-web request is no gRPC request to it
(Envoy decides by the content-type a request arrived with, application/grpc-web...): the reply
stays HTTP, its message in its body until then (`_grpc_failures` reads it there). Envoy's
grpc_web filter then makes a grpc-web reply of it: it keeps the HTTP status, moves the body
into grpc-message (percent-encoded, as for gRPC, but with a JSON body's final newline, which
Envoy drops for gRPC: the JSON of a status no gRPC mapper takes), and sets grpc-status by its
own table of HTTP statuses (415 -> UNKNOWN,
400 -> INTERNAL, 429 -> UNAVAILABLE), over the mapper's code. A reply to a request grpc_web
has not seen yet (the buffer filter's 413, the Origin check's 403) it leaves as plain JSON.

So:
- grpc_web is the first filter but these two, so it sees every grpc-web request before any
  filter may refuse it;
- the mapper for gRPC requests, which grpc-web requests are once grpc_web has rewritten their
  content-type, sets the HTTP status to 200 (a gRPC reply gets 200 anyway);
- these two, which Envoy runs after grpc_web on the way out, put back the mapper's code (the
  dynamic metadata the access log reads, `_access_log.METADATA`) and drop the newline.
Both are skipped for any reply that is not grpc-web (one header lookup each); for a grpc-web
call the gateway answered they rewrite nothing: its grpc-status is the code in the metadata
already, and its grpc-message has no encoded newline at its end.
"""

from __future__ import annotations

from gateway.edge import header_predicate, skip_when
from gateway.launch._access_log import METADATA

_TYPES = "type.googleapis.com/envoy."
_MESSAGE_METADATA = (METADATA[0], "grpc_web_message")


def _unless_grpc_web(name: str, inner: dict[str, object]) -> dict[str, object]:
    """Filter ``inner``, skipped for any reply whose content-type is not grpc-web's."""
    grpc_web = header_predicate("content-type", {"prefix": "application/grpc-web"}, of="Response")
    return skip_when(name, inner, {"not_matcher": grpc_web})


def _overwrite(header: str, metadata: tuple[str, str]) -> dict[str, object]:
    value = "%DYNAMIC_METADATA(" + ":".join(metadata) + ")%"
    return {
        "append": {
            "header": {"key": header, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS",
        }
    }


def grpc_web_filters() -> list[dict[str, object]]:
    """The HTTP filters before grpc_web, in the chain's order: the first sets a grpc-web
    reply's grpc-status and grpc-message headers, where it has them, from the metadata the
    second fills (a grpc-message without its final encoded newline)."""
    set_headers: dict[str, object] = {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "response_mutations": [
                    _overwrite("grpc-status", METADATA),
                    _overwrite("grpc-message", _MESSAGE_METADATA),
                ]
            },
        },
    }
    namespace, key = _MESSAGE_METADATA
    without_newline = {
        "header": "grpc-message",
        "on_header_present": {
            "metadata_namespace": namespace,
            "key": key,
            "regex_value_rewrite": {
                "pattern": {"regex": "(.*?)(?:%0A)?"},
                "substitution": "\\1",
            },
        },
        "remove": False,
    }
    read_message: dict[str, object] = {
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.header_to_metadata.v3.Config",
            "response_rules": [without_newline],
        },
    }
    return [
        _unless_grpc_web("grpc_web_status", set_headers),
        _unless_grpc_web("grpc_web_message", read_message),
    ]
