"""The replies Envoy makes itself (``local_reply_config``): JSON errors in the gateway's shape,
or OpenAI's envelope on the OpenAI paths, a gRPC status with a plain message to gRPC and
grpc-web calls, and 405 for a route called with a method it does not take (`_methods`).
Mappers are read only for those replies, never for a call that succeeds.

Every mapper also tags its reply with the gRPC code it put in the body or grpc-status
(`CODE_HEADER`), which is what the access log records for the reply (`_access_log`): one table
gives both.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from gateway.common.logs import LOGGED_ID_CHARS
from gateway.common.rpc import PUSHBACK_KEY
from gateway.launch._connect import CODE as CONNECT_CODE
from gateway.launch._methods import path_regex, routes
from gateway.service.openai import ERROR_KINDS

# The replies Envoy makes itself, by HTTP status, and the gRPC code a gateway error with that
# status carries (the reverse of Envoy's gRPC -> HTTP mapping). 413/431: too large, as gRPC
# reports an oversized message (RESOURCE_EXHAUSTED); any other error status: UNKNOWN.
LOCAL_REPLY_CODES: dict[int, int] = {
    400: 3,  # INVALID_ARGUMENT: malformed JSON, wrong field type, unknown query parameter
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND: no such path
    408: 4,  # DEADLINE_EXCEEDED
    413: 8,  # RESOURCE_EXHAUSTED: body too large
    415: 12,  # UNIMPLEMENTED: a compressed body, as gRPC answers a compression it lacks
    421: 7,  # PERMISSION_DENIED: a Host a loopback listener does not answer (edge/_hosts.py)
    429: 8,  # RESOURCE_EXHAUSTED: rate limited
    431: 8,  # RESOURCE_EXHAUSTED: headers too large
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE: no healthy gateway, overload
    504: 4,  # DEADLINE_EXCEEDED: route timeout
}
_UNKNOWN = 2

#: The header that carries a local reply's gRPC code to the access log: the template's
#: header_to_metadata filter moves it into dynamic metadata and removes it. Every local reply
#: passes through that filter, even one Envoy makes before it has a request (measured: an
#: HTTP/1.1 431, the 400 for a request line it cannot parse), so no client ever sees it.
CODE_HEADER = "x-saxgw-grpc-status"

#: The request's URL as Envoy's span gives it (x-forwarded-proto, Host, the client's path),
#: without the query string.
URL_WITHOUT_QUERY = "%REQ(X-FORWARDED-PROTO)%://%REQ(:AUTHORITY)%%PATH(NQ:ORIG_OR_PATH)%"


def _local_reply_body(code: int, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, object]:
    # The prefix the logs keep, as the gateway's errors name: a caller's ID may be as long as
    # the header limit, and a gRPC caller gets it in headers, over grpc's own limit (16 KiB).
    request_id = f"%REQ(X-REQUEST-ID):{LOGGED_ID_CHARS}%"
    return {
        "json_format": {
            "code": code,
            "message": message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RequestInfo", "request_id": request_id}
            ],
            "request_id": request_id,
        }
    }


def _status_filter(op: str, status: int) -> dict[str, object]:
    value = {"default_value": status, "runtime_key": f"local_reply.status_{op.lower()}_{status}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


# Envoy's own replies on the OpenAI paths (401/403/429 of the edge filters, 404 for a route the
# API lacks, 413, 503...) in OpenAI's envelope, as the gateway's own OpenAI errors are, so the
# SDKs read message, type and code from them. OpenAI paths: all of /v1/ but the native resource
# routes (/v1/sax/..., /v1/cells), and the gRPC path the transcoder rewrites them to before the
# edge filters run. The request ID stays in the x-request-id header (the SDKs' `request_id`).
# (safe_regex matches the whole :path, query string included.)
_OPENAI_PATH = r"(/v1/|/saxgateway\.v1\.OpenAIGateway/).*"
# A model ID in one segment (`/v1/sax%2Ftest%2Flm:generate`) is a native path too.
_NATIVE_V1_PATH = r"/v1/(sax(/|%2[fF]).*|cells([/?:].*)?)"
# Where the status says more than the gRPC code it maps to: an unknown route is no missing model
# ("model_not_found"), and a request too large is no rate limit.
_OPENAI_KIND_BY_STATUS: dict[int, tuple[str, str | None]] = {
    404: ("invalid_request_error", None),
    405: ("invalid_request_error", None),
    413: ("invalid_request_error", None),
    415: ("invalid_request_error", None),
    431: ("invalid_request_error", None),
}


def _header_filter(name: str, regex: str, *, invert: bool = False) -> dict[str, object]:
    match = {"name": name, "string_match": {"safe_regex": {"regex": regex}}}
    return {"header_filter": {"header": {**match, "invert_match": invert}}}


def _set_header(key: str, value: str) -> dict[str, object]:
    """A ``headers_to_add`` entry that replaces any header of that name."""
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _mapper(
    filters: list[dict[str, object]],
    code: int,
    body: dict[str, object],
    *,
    headers: tuple[dict[str, object], ...] = (),
    status: int | None = None,
) -> dict[str, object]:
    """A mapper for replies matching all ``filters``: ``body`` carries gRPC ``code``, which is
    also the code the access log records for the reply (`CODE_HEADER`); ``status`` replaces
    the HTTP status."""
    matches = filters[0] if len(filters) == 1 else {"and_filter": {"filters": filters}}
    mapper: dict[str, object] = {
        "filter": matches,
        "headers_to_add": [*headers, _set_header(CODE_HEADER, str(code))],
        "body_format_override": body,
    }
    if status is not None:
        mapper["status_code"] = status
    return mapper


def _path_filter(regex: str, *, invert: bool = False) -> dict[str, object]:
    return _header_filter(":path", regex, invert=invert)


def _openai_body(status: int, code: int, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, object]:
    grpc_code = next(c for c in grpc.StatusCode if c.value[0] == code)
    kind, openai_code = _OPENAI_KIND_BY_STATUS.get(status) or ERROR_KINDS[grpc_code]
    error = {"message": message, "type": kind, "param": None, "code": openai_code}
    return {"json_format": {"error": error}}


def _on_openai_path() -> list[dict[str, object]]:
    return [_path_filter(_OPENAI_PATH), _path_filter(_NATIVE_V1_PATH, invert=True)]


def _openai_mapper(op: str, status: int, code: int) -> dict[str, object]:
    filters = [_status_filter(op, status), *_on_openai_path()]
    return _mapper(filters, code, _openai_body(status, code))


# A method the API does not take on a path it has: what grpc-gateway answers (405, with its
# code for it, UNIMPLEMENTED), where the transcoder says 404 as for a path that does not exist.
_NOT_ALLOWED = 405
_UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]


def _method_mapper(regex: str, verbs: frozenset[str], openai: bool) -> dict[str, object]:
    allowed = ", ".join(sorted(verbs))
    message = f"%REQ(:METHOD)% is not allowed on this path; it takes {allowed}"
    if openai:
        body = _openai_body(_NOT_ALLOWED, _UNIMPLEMENTED, message)
    else:
        body = _local_reply_body(_UNIMPLEMENTED, message)
    on_path = [
        _status_filter("EQ", 404),
        _path_filter(regex),
        _header_filter(":method", "|".join(sorted(verbs)), invert=True),
    ]
    allow = _set_header("allow", allowed)
    return _mapper(on_path, _UNIMPLEMENTED, body, headers=(allow,), status=_NOT_ALLOWED)


# A gRPC reply's message is the reply's own text, as grpc-message carries the gateway's own
# errors' (`model /sax/test/nope is not published: NotFound`): Envoy makes a gRPC local reply's
# body its grpc-message (the body grpc_web moves there for grpc-web), and the HTTP face's JSON
# made grpc-message a JSON document, which grpcio's details() and grpcurl printed as the
# message. The request ID, the JSON's other field, travels as the gateway's does: a
# google.rpc.RequestInfo in grpc-status-details-bin (`_grpc_failures`), whose Status says the
# same message (Connect-ES reads the status from there).
_GRPC_BODY: dict[str, object] = {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}}


def _grpc_mapper(
    status: int,
    code: int,
    *,
    also: tuple[dict[str, object], ...] = (),
    add: tuple[dict[str, object], ...] = (),
) -> dict[str, object]:
    """A gRPC (or grpc-web) request's local reply carries the gRPC code of ``status`` in its
    grpc-status, which Envoy would otherwise derive by its own table (413 -> UNKNOWN, 504 ->
    UNAVAILABLE), and the reply's own text as its grpc-message (`_GRPC_BODY`). Its HTTP
    status is 200, as gRPC's is (Envoy sets it for gRPC itself, not for grpc-web, whose
    request it does not count as gRPC: `_grpc_web` makes the rest of a grpc-web reply).
    gRPC's content-types only (with any codec, as Envoy counts them): a grpc-web request is
    one once grpc_web has rewritten its content-type, and one in a codec grpc_web does not
    take (application/grpc-web+json) keeps an HTTP reply, not a 200 no client would read, and
    so does application/grpc with parameters (`; charset=utf-8`), which Envoy does not count
    as gRPC: it got a 200 with no grpc-status and the text as its body."""
    grpc_type = {"safe_regex": {"regex": r"application/grpc(\+.*)?"}}
    is_grpc: dict[str, object] = {
        "header_filter": {"header": {"name": "content-type", "string_match": grpc_type}}
    }
    # The transcoder makes an HTTP/JSON request look like gRPC too; it keeps the HTTP path.
    not_transcoded: dict[str, object] = {
        "header_filter": {"header": {"name": "x-envoy-original-path", "present_match": False}}
    }
    headers: tuple[dict[str, object], ...] = (_set_header("grpc-status", str(code)), *add)
    if status in _NEVER_MENDED:
        headers += (_set_header(PUSHBACK_KEY, "-1"),)
    filters = [_status_filter("EQ", status), *also, is_grpc, not_transcoded]
    return _mapper(filters, code, _GRPC_BODY, headers=headers, status=200)


# A Connect unary call, which the template refuses with 415 (gateway/launch/_connect.py), gets
# the refusal as Connect's error JSON, whose `code` is a name: Connect clients read a number
# there as no error body at all, and said `unimplemented: 404 Not Found`, never why.
_CONNECT_REQUEST: dict[str, object] = {
    "header_filter": {"header": {"name": "connect-protocol-version", "present_match": True}}
}


def _connect_mapper() -> dict[str, object]:
    body: dict[str, object] = {
        "json_format": {"code": CONNECT_CODE, "message": "%LOCAL_REPLY_BODY%"}
    }
    return _mapper([_status_filter("EQ", 415), _CONNECT_REQUEST], _UNIMPLEMENTED, body)


# Envoy's RESOURCE_EXHAUSTED replies that no retry mends (a body, or headers, too large): a
# gRPC retry policy that retries the code (docs/clients.md) is told not to, by a negative
# pushback (gRFC A6); it sent the same oversized request again, up to its maxAttempts.
_NEVER_MENDED = frozenset({413, 431})


# Envoy's health_check filter answers /healthz with a bare 503 when no gateway is healthy: the
# reply says why, for whoever reads a failing probe (a Kubernetes event, curl).
HEALTHZ_DOWN = "no gateway is healthy: none can take calls"
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


def _healthz_mapper() -> dict[str, object]:
    filters = [_status_filter("EQ", 503), _path_filter(path_regex("/healthz"))]
    return _mapper(filters, _UNAVAILABLE, _local_reply_body(_UNAVAILABLE, HEALTHZ_DOWN))


# Requests Envoy refuses before any route, with no body of its own to say why (it wrote
# `"message": ""`), by Envoy's response code details: status, gRPC code, what was wrong. (A
# message is a format string too: no % in it.)
_BARE_REFUSALS: dict[str, tuple[int, int, str]] = {
    "missing_host_header": (400, 3, "the request has no Host header"),
    # An encoded NUL (%00) or a fragment: Envoy leaves a malformed percent-escape as it is.
    "path_normalization_failed": (
        400,
        3,
        # A fragment too (`/listcells#top`), which the message did not name: it blamed a
        # NUL or a percent-escape (a malformed one, `/%zz`, is a path like any other: 404).
        "the path cannot be normalized: it holds a fragment (#...), which a client keeps to"
        " itself, or an encoded NUL",
    ),
    # HTTP's QUERY method (a safe request with a body) must name its body's type: without a
    # Content-Type Envoy refuses it before any route, where one that has it is the route's
    # 405. A fuzzer's undeclared method: "message": "" said nothing.
    "query_missing_content_type": (
        400,
        3,
        "a QUERY request needs a Content-Type naming its body's media type; no path of this"
        " API takes QUERY (it is a 405 naming those a path takes)",
    ),
    # `GET https://localhost:8888/x HTTP/1.1` on the plaintext port: Envoy's 403 "Forbidden"
    # read as a denial of the caller's rights; the request is malformed for this port.
    "http1.https_url_on_plaintext_connection": (
        400,
        3,
        "an https:// request target on a plaintext connection: send http://, or https:// to a"
        " port that serves TLS",
    ),
    "absolute_path_rejected": (
        404,
        5,
        "the request target must be a path such as /generate (OPTIONS * is not served)",
    ),
    # A transfer coding other than chunked (`Transfer-Encoding: gzip, chunked`): 501, as RFC
    # 9112 6.1 asks for a coding the server does not implement. Also where 6.3 asks for 400
    # (chunked not the last coding, `Transfer-Encoding: gzip`): Envoy refuses both before a
    # mapper can read the header to tell them apart. "Not Implemented" said no more.
    "http1.invalid_transfer_encoding": (
        501,
        12,
        "Transfer-Encoding: this server implements only the chunked transfer coding: send the"
        " body with Content-Length, or chunked alone",
    ),
    # A WebSocket upgrade, or CONNECT: Envoy's 403 said nothing and read as a denial.
    "upgrade_failed": (
        501,
        12,
        "protocol upgrades (WebSocket, CONNECT) are not served: send plain HTTP requests;"
        " streams are server-sent events (/generate_stream) or gRPC",
    ),
}


# What a bare refusal says on the OpenAI paths where the native message would point elsewhere.
_OPENAI_MESSAGES = {
    "upgrade_failed": "protocol upgrades (WebSocket, CONNECT) are not served: send plain HTTP"
    ' requests; streams are server-sent events ("stream": true)',
}


def _cel_filter(expression: str) -> dict[str, object]:
    """Replies for which the CEL ``expression`` holds (read for local replies only)."""
    cel = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
    typed_config = {"@type": cel, "expression": expression}
    name = "envoy.access_loggers.extension_filters.cel"
    return {"extension_filter": {"name": name, "typed_config": typed_config}}


def _details_filter(details: str) -> dict[str, object]:
    """Replies whose response code details are ``details``."""
    return _cel_filter(f"response.code_details == '{details}'")


# The transcoder's 400 for a body that does not fit the method's message repeats the value it
# could not take ("image: invalid value \"<the whole base64>\" for type TYPE_BYTES"): a 5 MiB
# image with one bad character came back as a 7 MB error, which clients print and log whole.
# Past this many request bytes the reply says what was wrong without the value (and so
# without the field's name, which Envoy's message alone carries: it cannot be cut).
TRANSCODE_ECHO_BYTES = 64 * 1024
_BIG_BODY_NOT_PARSED = (
    "the body does not fit this method's JSON: a value has the wrong type, or a bytes field"
    " is not base64 (the parser's message, which repeats the value, is left out for a body"
    f" over {TRANSCODE_ECHO_BYTES} bytes)"
)
_INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def _big_body_mapper() -> dict[str, object]:
    failed = "response.code_details.startsWith('grpc_json_transcode_failure')"
    big = _cel_filter(f"{failed} && request.size > {TRANSCODE_ECHO_BYTES}")
    filters = [_status_filter("EQ", 400), big]
    return _mapper(
        filters, _INVALID_ARGUMENT, _local_reply_body(_INVALID_ARGUMENT, _BIG_BODY_NOT_PARSED)
    )


# RFC 9110 11.6.1: a 401 names the scheme to authenticate with, and RFC 6750 3.1 adds
# `invalid_token` when a credential was sent. api_key_auth wrote none; jwt_authn writes its own,
# replaced by these: its realm is the whole URL, so a query, which may hold a key or a token
# (the access log keeps it out), came back in the header. The realm here is the URL without it.
_REALM = f'Bearer realm="{URL_WITHOUT_QUERY}"'
_SENT_CREDENTIAL: dict[str, object] = {
    "or_filter": {
        "filters": [
            {"header_filter": {"header": {"name": name, "present_match": True}}}
            for name in ("authorization", "x-api-key")
        ]
    }
}


def _challenge(sent: bool) -> tuple[dict[str, object], ...]:
    """The ``WWW-Authenticate`` of a 401, for a request that ``sent`` a credential or not.
    One that still holds none may have had a JWT that jwt_authn verified and took out of the
    request: the Lua that refuses it for a claim it lacks writes its own challenge, kept."""
    value = f'{_REALM}, error="invalid_token"' if sent else _REALM
    action = "OVERWRITE_IF_EXISTS_OR_ADD" if sent else "ADD_IF_ABSENT"
    return ({"header": {"key": "www-authenticate", "value": value}, "append_action": action},)


# jwt_authn refuses a genuine token minted for another audience with 403, where every other
# invalid token (bad signature, unknown issuer, expired) is 401: RFC 6750 3.1 makes each of
# them `invalid_token`, 401, with the challenge of any other (`_challenge`). The reply
# keeps jwt_authn's reason; its response code details name it (spaces as underscores).
_INVALID_TOKENS = ("jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}",)
_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]


def _invalid_token_mappers(details: str) -> list[dict[str, object]]:
    """A 403 of jwt_authn for ``details`` made the 401 of any other invalid token: gRPC's
    UNAUTHENTICATED, OpenAI's authentication error on the OpenAI paths, the gateway's JSON
    error elsewhere."""
    refused = (_status_filter("EQ", 403), _details_filter(details))
    code, status = _UNAUTHENTICATED, 401
    body, add = _openai_body(status, code), _challenge(sent=True)
    openai = _mapper([*refused, *_on_openai_path()], code, body, headers=add, status=status)
    native = _mapper(list(refused), code, _local_reply_body(code), headers=add, status=status)
    return [_grpc_mapper(403, code, also=refused[1:]), openai, native]


def _grpc_unauthenticated_mappers() -> list[dict[str, object]]:
    """Envoy's 401s to gRPC and grpc-web, with the challenge HTTP's carry (a page may read
    it): an API key's refusal had none, where a JWT's had jwt_authn's."""
    sent = _grpc_mapper(401, _UNAUTHENTICATED, also=(_SENT_CREDENTIAL,), add=_challenge(True))
    return [sent, _grpc_mapper(401, _UNAUTHENTICATED, add=_challenge(False))]


def _unauthenticated_mappers() -> list[dict[str, object]]:
    """Envoy's 401s over HTTP, OpenAI's envelope on the OpenAI paths, each with its
    ``WWW-Authenticate`` challenge."""
    code, mappers = _UNAUTHENTICATED, []
    for sent in (True, False):
        add = _challenge(sent)
        refused = [_status_filter("EQ", 401), *([_SENT_CREDENTIAL] if sent else [])]
        openai = _openai_body(401, code)
        mappers.append(_mapper([*refused, *_on_openai_path()], code, openai, headers=add))
        mappers.append(_mapper(refused, code, _local_reply_body(code), headers=add))
    return mappers  # those for a credential sent first: the plain ones match them too


def local_reply_mappers(descriptor: Path) -> list[dict[str, object]]:
    """``local_reply_config.mappers``: JSON bodies for error statuses only (>= 400), in
    OpenAI's envelope on the OpenAI paths, the matching grpc-status and the reply's text as
    grpc-message for gRPC requests (but 404: a method no route serves is UNIMPLEMENTED to
    gRPC, with the JSON of the others); the first mapper that
    matches wins. First, requests refused before any route (`_BARE_REFUSALS`), then 405s for
    the routes in ``descriptor`` (the set the transcoder serves)."""
    mappers = []
    for details, (status, code, message) in _BARE_REFUSALS.items():
        # On the OpenAI paths in OpenAI's envelope, the SDKs' (a WebSocket upgrade of
        # /v1/responses, as the Responses API's WebSocket mode sends): first, as the more
        # specific; a request refused before its path was read matches the other.
        openai = [_details_filter(details), *_on_openai_path()]
        body = _openai_body(status, code, _OPENAI_MESSAGES.get(details, message))
        # The SDKs retry a 5xx unless told not to, as the gateway's own 501s tell them.
        no_retry = (_set_header("x-should-retry", "false"),) if status >= 500 else ()
        mappers.append(_mapper(openai, code, body, headers=no_retry, status=status))
        native = _local_reply_body(code, message)
        mappers.append(_mapper([_details_filter(details)], code, native, status=status))
    for details in _INVALID_TOKENS:
        mappers += _invalid_token_mappers(details)
    mappers.append(_big_body_mapper())
    mappers.append(_connect_mapper())
    mappers += [_method_mapper(r.regex, r.verbs, r.openai) for r in routes(descriptor)]
    mappers.append(_healthz_mapper())
    mappers += _grpc_unauthenticated_mappers()  # every 401: with its challenge
    mappers += [_grpc_mapper(s, c) for s, c in LOCAL_REPLY_CODES.items() if s not in (401, 404)]
    mappers += _unauthenticated_mappers()
    mappers += [_openai_mapper("EQ", status, code) for status, code in LOCAL_REPLY_CODES.items()]
    mappers.append(_openai_mapper("GE", 400, _UNKNOWN))
    mappers += [
        _mapper([_status_filter("EQ", status)], code, _local_reply_body(code))
        for status, code in LOCAL_REPLY_CODES.items()
    ]
    mappers.append(_mapper([_status_filter("GE", 400)], _UNKNOWN, _local_reply_body(_UNKNOWN)))
    return mappers
