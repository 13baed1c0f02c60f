"""The API's HTTP routes as Envoy matches them: each path form and the methods it takes.

The transcoder knows a route only as (method, path): ``GET /generate`` is as unknown to it as
``GET /nope``, and both get a 404 "Could not resolve ... to a method", which sends a caller
looking for a typo in the path. `_replies` turns the first kind into a 405 naming the methods
the path takes. The routes come from the HTTP rules of the descriptor set Envoy serves, so a
new RPC needs nothing here.

HTTP wants HEAD wherever GET is (RFC 9110 9.3.2; uptime checkers send it), and the transcoder
matches a rule's method exactly: `add_head_bindings` gives every GET binding a HEAD twin in the
descriptor set Envoy serves (scripts/gen), not in proto/, where it would be noise in every
client's API. A HEAD call runs as its GET, and `head_filter` empties the reply's body.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from gateway.common.httprules import patterns
from gateway.service._streams import HTTP_METHOD_HEADER

_TYPES = "type.googleapis.com/envoy."
# Routes of these services answer errors in OpenAI's envelope.
OPENAI_SERVICES = frozenset({"saxgateway.v1.OpenAIGateway"})
_QUERY = r"(\?.*)?"  # Envoy matches a regex against the whole :path, query string included


@dataclass(frozen=True)
class Route:
    regex: str
    """RE2, matching the request paths of one path form."""
    verbs: frozenset[str]
    """The HTTP methods the API takes there."""
    openai: bool


def _http_rules(files: descriptor_pb2.FileDescriptorSet) -> Iterable[tuple[str, http_pb2.HttpRule]]:
    """Each method's HTTP rule, with the full name of its service."""
    for f in files.file:
        for service in f.service:
            for method in service.method:
                # A method without an HTTP rule reads as an empty one: no bindings.
                rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]  # type: ignore[index]
                yield f"{f.package}.{service.name}", rule


def add_head_bindings(files: descriptor_pb2.FileDescriptorSet) -> None:
    """Gives every GET binding in ``files`` a HEAD binding of the same path (a ``custom``
    pattern, as the transcoder reads one), unless it has one."""
    for _, rule in _http_rules(files):
        bound = set(patterns(rule))
        for r in (rule, *rule.additional_bindings):
            if r.WhichOneof("pattern") != "get" or ("HEAD", r.get) in bound:
                continue
            head = http_pb2.HttpRule()
            head.CopyFrom(r)  # its response_body, if it has one
            head.ClearField("additional_bindings")
            head.custom.kind, head.custom.path = "HEAD", r.get  # replaces `get` (a oneof)
            rule.additional_bindings.append(head)


#: The files Envoy serves itself (envoy/envoy.yaml.tmpl: the OpenAPI document, the /docs page
#: and its files), for GET and HEAD only; another method goes on to the transcoder, whose 404
#: is then a 405 as on the API's own paths. (/healthz answers any method.)
ENVOY_GET_PATHS = (
    "/openapi.json",
    "/docs",
    "/docs/",
    "/docs/docs.js",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-ui.css",
)
_GET_OR_HEAD = frozenset({"GET", "HEAD"})


def routes(descriptor: Path) -> list[Route]:
    """Every path form of the HTTP rules in ``descriptor`` (a FileDescriptorSet), with the
    methods the API takes on it, and `ENVOY_GET_PATHS`."""
    verbs: dict[str, set[str]] = defaultdict(set)
    openai: dict[str, bool] = {}
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    for service, rule in _http_rules(files):
        for verb, template in patterns(rule):
            regex = path_regex(template)
            verbs[regex].add(verb)
            openai[regex] = service in OPENAI_SERVICES
    api = [Route(regex, frozenset(v), openai[regex]) for regex, v in sorted(verbs.items())]
    return api + [Route(path_regex(p), _GET_OR_HEAD, False) for p in ENVOY_GET_PATHS]


def grpc_paths_regex(descriptor: Path) -> str:
    """RE2 matching a gRPC method path of the services in ``descriptor``
    (``/saxgateway.v1.SaxGateway/Generate``), with any query string. By service, not by
    method: RE2's program for every method's name is over Envoy's limit (100)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    services = sorted(re.escape(f"{f.package}.{s.name}") for f in files.file for s in f.service)
    return f"/({'|'.join(services)})/[A-Za-z0-9_]+{_QUERY}"


#: RE2 for a header name gRPC metadata cannot carry (it takes 0-9 a-z _ . -), such as ``+``
#: or ``a|b``, both HTTP tokens; pseudo-headers (``:path``) add only the colon.
NOT_METADATA = "[^:]*[^0-9a-z_.:-].*"


def method_filter() -> dict[str, object]:
    """The HTTP filter that hands the client's method to the gateway and the access log in
    HTTP_METHOD_HEADER, and drops the headers no gateway could read.

    The transcoder makes every call a POST: the log said POST for each GET, and the gateway
    could not tell a HEAD from its GET, so a HEAD on a stream (``/watch``) was a watch that
    never ended, holding the client's connection. Overwritten on every request, so no client
    sets it. A header named outside gRPC's metadata alphabet (``curl -H '+;'``) reached the
    gateway's grpc server, which failed the call 500 INTERNAL "Illegal header key"; HTTP
    allows the name, so it is dropped here, as a header the API never reads."""
    header = {"key": HTTP_METHOD_HEADER, "value": "%REQ(:METHOD)%"}
    method = {"append": {"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
    illegal = {"remove_on_match": {"key_matcher": {"safe_regex": {"regex": NOT_METADATA}}}}
    return {
        "name": "http_method",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [illegal, method]},
        },
    }


def head_filter() -> dict[str, object]:
    """The HTTP filter that empties the body of every reply to a HEAD request. The transcoder
    writes a HEAD call's JSON as its GET's, and Envoy sends it (measured, HTTP/1.1): a
    keep-alive client read it as the start of its next reply. Emptied here, the reply keeps
    GET's headers, ``content-length`` included (RFC 9110 9.3.2). Envoy's own replies (local
    replies, direct responses) have no body for HEAD already.

    A composite filter runs the Lua only on a HEAD request's match; for any other request it
    does nothing past a header lookup. Not a filter skipped unless the method is HEAD: Envoy's
    replies to requests it refuses before reading their headers (431, OPTIONS *, no Host)
    gave that matcher no method to look at, so it did not skip, and their bodies were lost.
    First in the chain, so last on the way out, after every filter that may write a body
    (`openai_errors`)."""
    source = (
        "function envoy_on_response(response)\n"
        '  for chunk in response:bodyChunks() do chunk:setBytes("") end\n'
        "end\n"
    )
    lua = {
        "name": "head_body",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": source},
        },
    }
    run_lua = {
        "name": "head_body",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.composite.v3.ExecuteFilterAction",
            "typed_config": lua,
        },
    }
    method = {
        "name": "method",
        "typed_config": {
            "@type": _TYPES + "type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": ":method",
        },
    }
    composite = {"@type": _TYPES + "extensions.filters.http.composite.v3.Composite"}
    return {
        "name": "head_bodies",
        "typed_config": {
            "@type": _TYPES + "extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "composite", "typed_config": composite},
            "xds_matcher": {
                "matcher_tree": {
                    "input": method,
                    "exact_match_map": {"map": {"HEAD": {"action": run_lua}}},
                }
            },
        },
    }


def path_regex(template: str) -> str:
    """An RE2 regex for the request paths ``template`` (an HTTP rule's path) matches.

    ``*`` is one segment and ``**`` any number; neither takes a ``:``, which starts the
    rule's verb (``/v1/{model=sax/*/*}:generate``) and which Sax names never contain.
    """
    return _segments(template) + _QUERY


def _segments(template: str) -> str:
    out = []
    for piece in re.split(r"(\{[^}]*\}|\*\*|\*)", template):
        if piece.startswith("{"):  # a field binding: {model} is {model=*}
            out.append(_segments(piece[1:-1].partition("=")[2] or "*"))
        elif piece == "**":
            out.append("[^:?]+")
        elif piece == "*":
            out.append("[^/:?]+")
        else:
            out.append(re.escape(piece))
    return "".join(out)
