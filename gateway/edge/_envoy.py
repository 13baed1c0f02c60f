"""Envoy's share of the config file: authentication, roles, quotas, origin checks, TLS, limits.

`early_filters`, `credential_filters` and `role_filters` return Envoy HTTP filters as dicts;
`_listener` places them in the template with the listener's TLS, limits and JSON local replies.

Filter order, and why:
  grpc_web (first, so its replies to grpc-web are grpc-web: gateway/launch/_grpc_web.py)
  -> health_check -> cors -> strip identity header, refuse foreign Origins
  -> `Bearer` scheme spelled as the filters after it expect
  -> jwt_authn -> certificate identity -> a verified JWT names its client -> api_key_auth
  -> anonymous body limit -> anonymous callers' compressed messages bounded
  -> buffer -> transcoder -> rbac -> local_ratelimit -> router
Credentials are checked at the request's headers, before any filter holds its body (the
buffer filter and the transcoder wait for a whole body, up to ``limits.max_request_bytes``):
a caller without one could otherwise make Envoy hold that much per stream, 256 streams to a
connection. A request has its own path there, so the open methods' HTTP paths are open too
(`_paths.OPEN_HTTP`); a caller let through without an identity (an open path) may send a few
KiB at most (`ANONYMOUS_BODY_BYTES`). Roles are checked after the transcoder, on
gRPC paths, so that one set of rules covers HTTP/JSON, gRPC and grpc-web. A refusal is Envoy's
local reply, which local_reply_config turns into the JSON of a gateway error (the OpenAI
envelope on the OpenAI paths; gateway/launch/_replies.py), and a gRPC status for gRPC callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.common.rpc import PUSHBACK_KEY
from gateway.edge._paths import (
    ADMIN,
    EXPOSABLE_PATHS,
    OPEN,
    OPEN_HTTP,
    REFLECTION_PREFIX,
)
from gateway.edge._ratelimit import rate_limit
from gateway.edge._schema import JWT_SHAPE, EdgeConfig

#: The header carrying the client id Envoy established; any copy a client sends is removed.
IDENTITY_HEADER = "x-saxgw-client"
_JWT_FILTER = "envoy.filters.http.jwt_authn"
_JWT_PAYLOAD = "jwt_payload"
_TYPES = "type.googleapis.com/envoy."
EXTENSIONS = _TYPES + "extensions."
#: The most body Envoy holds for a caller without an identity on a stack that checks
#: credentials: only the open paths let one through, and their requests are empty (GetInfo,
#: the /docs files) or name a service (grpc.health.v1).
ANONYMOUS_BODY_BYTES = 8192


def _filter(name: str, type_url: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": EXTENSIONS + type_url, **config}}


def _lua_quoted(text: str) -> str:
    """``text`` as a Lua string literal: printable ASCII as is, every other byte of its UTF-8
    as a decimal escape. json.dumps wrote ``\\u00e4``, an escape LuaJIT does not have, so an
    issuer with a non-ASCII character stopped Envoy at start ("invalid escape sequence")."""
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _lua(name: str, code: str) -> dict[str, Any]:
    """A Lua filter named ``name`` that runs ``code``."""
    return _filter(
        name, "filters.http.lua.v3.Lua", {"default_source_code": {"inline_string": code}}
    )


def _exact(path: str) -> dict[str, Any]:
    return {"url_path": {"path": {"exact": path}}}


def _any_of(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"or_rules": {"rules": rules}} if rules else {"not_rule": {"any": True}}


def _paths(config: EdgeConfig, role: str) -> list[dict[str, Any]]:
    """Permissions for the calls reserved to ``role``."""
    paths = [_exact(p) for p in ADMIN] if role == "admin" else []
    for name in sorted(config.admin_only):
        if name == "reflection":
            paths.append({"url_path": {"path": {"prefix": REFLECTION_PREFIX}}})
        else:
            paths += [_exact(p) for p in EXPOSABLE_PATHS[name]]
    return paths


def _jwt_claim(*keys: str) -> list[dict[str, str]]:
    return [{"key": k} for k in (_JWT_PAYLOAD, *keys)]


def _metadata(path: list[dict[str, str]], value: dict[str, Any]) -> dict[str, Any]:
    """A principal matching what jwt_authn stored about the verified token."""
    matcher = {"filter": _JWT_FILTER, "path": path, "value": value}
    return {"sourced_metadata": {"metadata_matcher": matcher}}


def _principals(config: EdgeConfig, role: str) -> list[dict[str, Any]]:
    """Who holds ``role``: API-key clients by the header Envoy set, JWTs by their claims."""
    ids: list[dict[str, Any]] = []
    jwt_verified = _metadata(_jwt_claim(), {"present_match": True})
    key_clients = sorted({k.client for k in config.api_keys if role in k.roles})
    for client in key_clients:
        # A JWT's claim lands in the same header: only a request without one is a key client.
        header = {"header": {"name": IDENTITY_HEADER, "string_match": {"exact": client}}}
        ids.append({"and_ids": {"ids": [header, {"not_id": jwt_verified}]}})
    for cert in config.certificate_clients:
        if role in cert.roles:
            subject = {"authenticated": {"principal_name": {"exact": cert.subject}}}
            header = {"header": {"name": IDENTITY_HEADER, "string_match": {"exact": cert.client}}}
            ids.append({"and_ids": {"ids": [subject, header]}})
    # A token whose client id is a key's or a certificate's client: the gateway reads a caller's
    # ACLs, model list and limits by the id alone, so a user who chose it (Keycloak's
    # preferred_username, an email) passed that client's.
    named = {k.client for k in config.api_keys} | {c.client for c in config.certificate_clients}
    not_named = [
        {"not_id": {"header": {"name": IDENTITY_HEADER, "string_match": {"exact": client}}}}
        for client in sorted(named)
    ]
    for issuer in config.jwt:
        iss = _metadata(_jwt_claim("iss"), {"string_match": {"exact": issuer.issuer}})
        if role in issuer.roles:
            ids.append({"and_ids": {"ids": [iss, *not_named]}} if not_named else iss)
        elif issuer.roles_claim:
            holds = {"list_match": {"one_of": {"string_match": {"exact": role}}}}
            claim = _metadata(_jwt_claim(issuer.roles_claim), holds)
            path = issuer.roles_claim.split(".")
            if len(path) > 1 and all(path):  # `a..b` or `roles.` names no path: Envoy refuses it
                # Read as the client claim is (`_CLIENT_CLAIM_CHECK`): a path of nested
                # objects (Keycloak's realm_access.roles), else one claim of that whole name
                # (Auth0's https://example.com/roles). Only the whole name was read, so
                # Keycloak's roles were never found.
                nested = _metadata(_jwt_claim(*path), holds)
                claim = {"or_ids": {"ids": [nested, claim]}}
            ids.append({"and_ids": {"ids": [iss, claim, *not_named]}})
    return ids or [{"not_id": {"any": True}}]


def _rbac(config: EdgeConfig) -> dict[str, Any]:
    admin_paths = _paths(config, "admin")
    policies = {
        "open": {
            "permissions": [_any_of([_exact(p) for p in (*OPEN, *OPEN_HTTP)])],
            "principals": [{"any": True}],
        },
        "admin": {
            "permissions": [_any_of(admin_paths)],
            "principals": _principals(config, "admin"),
        },
        "data": {
            "permissions": [{"not_rule": _any_of(admin_paths)}],
            "principals": _principals(config, "data"),
        },
    }
    return _filter(
        "envoy.filters.http.rbac",
        "filters.http.rbac.v3.RBAC",
        {"rules": {"action": "ALLOW", "policies": policies}},
    )


def header_predicate(name: str, match: dict[str, Any], *, of: str = "Request") -> dict[str, Any]:
    """A matcher predicate: header ``name`` of the request (or ``of="Response"``) is present
    and matches ``match``."""
    return {
        "single_predicate": {
            "input": {
                "name": name,
                "typed_config": {
                    "@type": _TYPES + f"type.matcher.v3.Http{of}HeaderMatchInput",
                    "header_name": name,
                },
            },
            "value_match": match,
        }
    }


def _regex(regex: str) -> dict[str, Any]:
    """An xDS matcher's string matcher: the whole value matches ``regex`` (RE2). The xDS
    ``RegexMatcher`` requires its engine; Envoy's own (route headers) is RE2 by default and warns
    that ``google_re2`` is deprecated: use `_route_regex` there."""
    return {"safe_regex": {"google_re2": {}, "regex": regex}}


def _route_regex(regex: str) -> dict[str, Any]:
    """An Envoy (route) string matcher: the whole value matches ``regex``, RE2 by default."""
    return {"safe_regex": {"regex": regex}}


def _open_or_identified() -> dict[str, Any]:
    """A matcher predicate: the path (gRPC, or an open method's HTTP path) is open, or a JWT
    already set the identity header, to a text of one line: one with a control character
    (jwt_authn copies a claim as it is) was a 503 at the gateway ("invalid header value"),
    which clients retry, for a token that can never work; `_client_claim_check` refuses it."""
    alternatives = [p.replace(".", r"\.") for p in (*OPEN, *OPEN_HTTP)]
    open_regex = "^(" + "|".join(alternatives) + r")(\?.*)?$"
    return {
        "or_matcher": {
            "predicate": [
                header_predicate(IDENTITY_HEADER, _regex("[^[:cntrl:]]+")),
                header_predicate(":path", _regex(open_regex)),
            ]
        }
    }


def _api_keys(config: EdgeConfig) -> dict[str, Any]:
    api_key_auth = _filter(
        "envoy.filters.http.api_key_auth",
        "filters.http.api_key_auth.v3.ApiKeyAuth",
        {
            # Envoy looks keys up in a hash table: no byte-by-byte comparison with a secret.
            "credentials": [{"key": k.key, "client": k.client} for k in config.api_keys],
            "key_sources": [{"header": "authorization"}, {"header": "x-api-key"}],
            "forwarding": {"header": IDENTITY_HEADER, "hide_credentials": True},
        },
    )
    # Skipped on open paths and once a JWT or a certificate has identified the caller.
    return skip_when("envoy.filters.http.api_key_auth", api_key_auth, _open_or_identified())


_BEARER_SCHEME = """
function envoy_on_request(request)
  local headers = request:headers()
  local credential = string.match(headers:get("authorization"), "^%a+%s+(.-)%s*$")
  headers:replace("authorization", "Bearer " .. credential)
end
"""


def _bearer_scheme() -> dict[str, Any]:
    """Rewrites ``Authorization: bearer <credential>`` in any case to ``Bearer <credential>``.
    Auth schemes are case-insensitive (RFC 9110 §11.1), but jwt_authn's ``value_prefix`` and
    api_key_auth compare them byte for byte (measured: `bearer` and `BEARER` were refused).
    Lua, since no Envoy header mutation can rewrite part of a value; it runs only for a
    request whose scheme is some other spelling of ``Bearer`` (the matcher below), so the
    usual request pays a regex, not a Lua coroutine."""
    rewrite = _lua("bearer_scheme", _BEARER_SCHEME)
    usual = {
        "or_matcher": {
            "predicate": [
                {"not_matcher": header_predicate("authorization", _regex(r"(?i:bearer)\s+\S.*"))},
                header_predicate("authorization", _regex(r"Bearer \S.*")),
            ]
        }
    }
    return skip_when("bearer_scheme", rewrite, usual)


def skip_when(name: str, inner: dict[str, Any], predicate: dict[str, Any]) -> dict[str, Any]:
    """``inner``, skipped for requests that match ``predicate``."""
    skip = {"@type": EXTENSIONS + "filters.common.matcher.action.v3.SkipFilter"}
    matcher = {
        "predicate": predicate,
        "on_match": {"action": {"name": "skip", "typed_config": skip}},
    }
    return {
        "name": name,
        "typed_config": {
            "@type": EXTENSIONS + "common.matching.v3.ExtensionWithMatcher",
            "extension_config": inner,
            "xds_matcher": {"matcher_list": {"matchers": [matcher]}},
        },
    }


def _certificate_identity(subject: str, client: str) -> dict[str, Any]:
    """Sets the identity header to ``client`` when the peer certificate's subject is
    ``subject`` and no JWT set it already (the filter is skipped for any other subject)."""
    set_header = _filter(
        "envoy.filters.http.header_mutation",
        "filters.http.header_mutation.v3.HeaderMutation",
        {
            "mutations": {
                "request_mutations": [
                    {
                        "append": {
                            "header": {"key": IDENTITY_HEADER, "value": client},
                            "append_action": "ADD_IF_ABSENT",
                        }
                    }
                ]
            }
        },
    )
    other_subject = {
        "not_matcher": {
            "single_predicate": {
                "input": {
                    "name": "subject",
                    "typed_config": {
                        "@type": EXTENSIONS + "matching.common_inputs.ssl.v3.SubjectInput"
                    },
                },
                "value_match": {"exact": subject},
            }
        }
    }
    return skip_when(f"certificate_client.{client}", set_header, other_subject)


_BEARER_JWT = f"Bearer {JWT_SHAPE}"


def _one_of(requirements: list[dict[str, Any]]) -> dict[str, Any]:
    # Envoy refuses a `requires_any` of fewer than two: one requirement alone is required as is.
    if len(requirements) == 1:
        return requirements[0]
    return {"requires_any": {"requirements": requirements}}


def _jwt(config: EdgeConfig) -> dict[str, Any]:
    providers = {
        f"issuer{i}": {
            "issuer": j.issuer,
            "audiences": list(j.audiences),
            "local_jwks": {"inline_string": j.jwks},  # as read at start (JwtIssuer.jwks)
            "forward": False,
            # Envoy's default accepts a token without `exp` forever (docs/security.md).
            "require_expiration": j.require_expiration,
            # Only where docs/security.md says: without it, Envoy also takes the
            # `access_token` query parameter, and the access log writes paths out.
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "claim_to_headers": [{"header_name": IDENTITY_HEADER, "claim_name": j.client_claim}],
            "payload_in_metadata": _JWT_PAYLOAD,
        }
        for i, j in enumerate(config.jwt)
    }
    issuers: list[dict[str, Any]] = [{"provider_name": name} for name in providers]
    any_provider = list(issuers)
    if config.api_keys:
        # A bearer API key is not a JWT: let it through to api_key_auth.
        any_provider.append({"allow_missing_or_failed": {}})
    elif config.certificate_clients:
        # A listed client certificate is a credential of its own (docs/config.md): a request
        # without a token goes on to RBAC, which admits it by its certificate or refuses it.
        any_provider.append({"allow_missing": {}})
    rules: list[dict[str, Any]] = [{"match": {"path": p}} for p in (*OPEN, *OPEN_HTTP)]
    if config.api_keys:
        # A bearer token shaped like a JWT is no API key (`_load` refuses such keys): an
        # issuer must accept it, and a refusal keeps jwt_authn's reason ("Jwt is expired")
        # instead of api_key_auth's "Client authentication failed."
        jwt_shaped = {"name": "authorization", "string_match": _route_regex(_BEARER_JWT)}
        rules.append(
            {"match": {"prefix": "/", "headers": [jwt_shaped]}, "requires": _one_of(issuers)}
        )
    rules.append({"match": {"prefix": "/"}, "requires": _one_of(any_provider)})
    return _filter(
        "envoy.filters.http.jwt_authn",
        "filters.http.jwt_authn.v3.JwtAuthentication",
        {"providers": providers, "rules": rules},
    )


_CLIENT_CLAIM_CHECK = """
local claims = {%s}
local client_header = "%s"
function envoy_on_request(request)
  local verified = request:streamInfo():dynamicMetadata():get("%s")
  local payload = verified and verified["%s"]
  if payload == nil then
    return  -- no token was verified here (an open path): nothing to name
  end
  local claim = claims[payload["iss"]] or "sub"
  local headers = request:headers()
  -- jwt_authn's copy of the claim, with a control character: the others skip this check.
  local copied = headers:get(client_header) ~= nil
  local value = payload[claim]
  local dirty = type(value) == "string" and string.find(value, "%%c") ~= nil
  if not copied and not dirty and type(value) == "string" and value ~= "" then
    -- jwt_authn's claim_to_headers reads a name with dots as a path of nested objects only
    -- (Keycloak's realm_access.x); one claim of that whole name (Auth0's namespaced
    -- https://example.com/client_id) is read here. A text, of one line.
    headers:replace(client_header, value)
    return
  end
  local why = "Jwt has no " .. claim .. " claim, which names the client"
  if copied or dirty then
    why = "Jwt's " .. claim .. " claim cannot name the client: it holds a control character"
  end
  local scheme = headers:get("x-forwarded-proto") or headers:get(":scheme") or "http"
  local path = string.match(headers:get(":path") or "/", "^[^?]*")
  local realm = scheme .. "://" .. (headers:get(":authority") or "") .. path
  request:respond(
    {[":status"] = "401",
     ["www-authenticate"] = 'Bearer realm="' .. realm .. '", error="invalid_token"'},
    why)
end
"""


def _client_claim_check(config: EdgeConfig) -> dict[str, Any]:
    """Refuses a verified JWT that lacks its issuer's ``client_claim`` (401, naming it), and
    names the client by a claim whose name has dots that jwt_authn did not find as a path.
    Without this check such a token had no client id: on a stack of JWTs alone, RBAC admitted
    it by its issuer and the gateway served it as an anonymous caller (its address for a
    client's limits, no name for a Sax ACL); beside API keys, api_key_auth then refused it as
    "Client authentication failed.", which hid why.

    Lua, skipped unless nothing has named the caller and it sent no credential that a later
    filter reads: jwt_authn drops the ``Authorization`` of a token it verified, so an API key
    (that header or ``x-api-key``) and a certificate client's request skip it, and the usual
    request pays a few header matches, not a coroutine. Placed after the certificate filters,
    before api_key_auth."""
    table = ", ".join(
        f"[{_lua_quoted(j.issuer)}] = {_lua_quoted(j.client_claim)}" for j in config.jwt
    )
    code = _CLIENT_CLAIM_CHECK % (table, IDENTITY_HEADER, _JWT_FILTER, _JWT_PAYLOAD)
    check = _lua("client_claim_check", code)
    keyed = {
        "or_matcher": {
            "predicate": [
                header_predicate("authorization", _regex(".*")),
                header_predicate("x-api-key", _regex(".*")),
            ]
        }
    }
    # A key beside a token whose claim jwt_authn copied with a control character is no reason
    # to skip: api_key_auth then checked the key too, and RBAC refused the pair (403).
    unnamed = {"not_matcher": header_predicate(IDENTITY_HEADER, _regex(".*"))}
    named_or_keyed = {
        "or_matcher": {
            "predicate": [_open_or_identified(), {"and_matcher": {"predicate": [keyed, unnamed]}}]
        }
    }
    return skip_when("client_claim_check", check, named_or_keyed)


_ORIGIN_CHECK = """
local allowed = {%s}
local any_origin = %s
function envoy_on_request(request)
  local headers = request:headers()
  local origin = headers:get("origin")
  if origin == nil or any_origin or allowed[origin] then
    return
  end
  local host = headers:get(":authority")
  if host ~= nil and (origin == "http://" .. host or origin == "https://" .. host) then
    return  -- same origin: a page this gateway serves (/docs)
  end
  request:respond({[":status"] = "403"}, "cross-origin request refused: Origin is not allowed")
end
"""


def _origin_check(origins: Sequence[str]) -> dict[str, Any]:
    """Refuses any request with an Origin header that is neither allowed nor this gateway's
    own (403). Browsers send Origin on cross-site requests, including CORS "simple requests"
    that need no preflight; curl and SDKs send none and are unaffected. Lua, because the check
    compares two headers (Origin and the request's own host), which RBAC cannot."""
    table = ", ".join(f"[{_lua_quoted(o)}] = true" for o in origins if o != "*")
    code = _ORIGIN_CHECK % (table, "true" if "*" in origins else "false")
    check = _lua("envoy.filters.http.lua", code)
    return _unless_origin(check)


def _unless_origin(check: dict[str, Any]) -> dict[str, Any]:
    """``check``, skipped for a request without an Origin header (every non-browser client):
    its Lua coroutine would otherwise live as long as the request, ~1 KB of Envoy's memory
    per open SSE stream (BENCHMARKS.md)."""
    has_origin = header_predicate("origin", _regex(".*"))
    return skip_when(check["name"], check, {"not_matcher": has_origin})


def _strip_identity() -> dict[str, Any]:
    return _filter(
        "envoy.filters.http.header_mutation",
        "filters.http.header_mutation.v3.HeaderMutation",
        {"mutations": {"request_mutations": [{"remove": IDENTITY_HEADER}]}},
    )


#: What a gRPC reply carries in its headers that an HTTP/JSON client has no use for: the
#: transcoder has put the status in the HTTP status and the JSON body already, and a 429's
#: retry-after says what gRPC's pushback does.
GRPC_ONLY_HEADERS = ("grpc-status", "grpc-message", "grpc-accept-encoding", PUSHBACK_KEY)


def _grpc_headers_for_grpc_only() -> dict[str, Any]:
    """Removes `GRPC_ONLY_HEADERS` from replies to HTTP/JSON requests. Before the transcoder,
    so it sees its finished headers; skipped for gRPC replies (content-type
    application/grpc...), whose clients read them, and so for grpc-web replies, which are
    gRPC ones until grpc_web (first in the chain, last on the way out) makes them grpc-web.
    It looks at the reply, not the request: a reply Envoy makes before this filter has seen
    the request (the buffer filter's 413) must keep the grpc-status a gRPC client needs."""
    remove = _filter(
        "envoy.filters.http.header_mutation",
        "filters.http.header_mutation.v3.HeaderMutation",
        {"mutations": {"response_mutations": [{"remove": h} for h in GRPC_ONLY_HEADERS]}},
    )
    grpc = header_predicate("content-type", {"prefix": "application/grpc"}, of="Response")
    return skip_when("grpc_only_headers", remove, grpc)


def early_filters(origins: Sequence[str]) -> list[dict[str, Any]]:
    """Filters after grpc_web and CORS, before the transcoder; ``origins`` are those CORS
    allows."""
    return [_strip_identity(), _origin_check(origins), _grpc_headers_for_grpc_only()]


#: The name of `_anonymous_body` in the filter chain (routes that answer at the headers turn it
#: off, as they turn off the buffer filter).
ANONYMOUS_BODY = "anonymous_body"


def _anonymous_body(config: EdgeConfig) -> dict[str, Any]:
    """A buffer filter that holds at most `ANONYMOUS_BODY_BYTES` of a request without an
    identity (413 past it), skipped once a credential has set the identity header."""
    limit = min(ANONYMOUS_BODY_BYTES, config.limits.max_request_bytes)
    buffer = _filter(
        "envoy.filters.http.buffer",
        "filters.http.buffer.v3.Buffer",
        {"max_request_bytes": limit},
    )
    identified = header_predicate(IDENTITY_HEADER, _regex(".+"))
    return skip_when(ANONYMOUS_BODY, buffer, identified)


#: The name of `_anonymous_compression` in the filter chain.
ANONYMOUS_COMPRESSION = "anonymous_compression"

#: The most compressed message, as sent, a caller without an identity may send: what an
#: open call needs (an empty GetInfo, a health check naming a service: a few dozen bytes),
#: and at most ~256 KB inflated (gzip's ratio is ~1,000), a few ms of a gateway's CPU.
ANONYMOUS_COMPRESSED_BYTES = 256

_BOUND_COMPRESSION = f"""
function envoy_on_request(request)
  local body = request:body()
  if body ~= nil and body:length() > {ANONYMOUS_COMPRESSED_BYTES} then
    request:respond(
      {{[":status"] = "413"}},
      "a call that needs no credential (GetInfo, health) may compress its message "
        .. "(grpc-encoding) to {ANONYMOUS_COMPRESSED_BYTES} bytes at most: send it "
        .. "uncompressed (identity)")
  end
end
"""


def _anonymous_compression() -> dict[str, Any]:
    """Bounds a gRPC or grpc-web message compressed by a caller without an identity (an open
    call; a key is not checked there) to `ANONYMOUS_COMPRESSED_BYTES` as sent (413,
    RESOURCE_EXHAUSTED over gRPC). Envoy bounds the compressed bytes it holds
    (`_anonymous_body`, before this), not what they inflate to in the gateway: 8 KiB of gzip
    on an open path made the gateway inflate and parse 8 MB, about 85 ms of its CPU for each
    such call. Refusing every compressed open call (as this did) failed a client whose
    channel compresses every call, the usual way to turn compression on, at its GetInfo and
    health checks, its key in hand (told it had none); Lua, since only it reads the size."""
    compressed = {
        "or_matcher": {
            "predicate": [
                header_predicate(IDENTITY_HEADER, _regex("[^[:cntrl:]]+")),
                {"not_matcher": header_predicate("grpc-encoding", _regex(".*"))},
                header_predicate("grpc-encoding", _regex("identity")),
                # HTTP/JSON: the transcoder frames its messages uncompressed, whatever the
                # header says.
                {"not_matcher": header_predicate("content-type", {"prefix": "application/grpc"})},
            ]
        }
    }
    return skip_when(
        ANONYMOUS_COMPRESSION, _lua(ANONYMOUS_COMPRESSION, _BOUND_COMPRESSION), compressed
    )


def credential_filters(config: EdgeConfig) -> list[dict[str, Any]]:
    """Filters after the early ones, before the buffer filter: who the caller is, from the
    request's headers alone."""
    filters: list[dict[str, Any]] = []
    if config.jwt or config.api_keys:
        filters.append(_bearer_scheme())
    if config.jwt:
        filters.append(_jwt(config))
    filters += [_certificate_identity(c.subject, c.client) for c in config.certificate_clients]
    if config.jwt:
        filters.append(_client_claim_check(config))
    if config.api_keys:
        filters.append(_api_keys(config))
    if config.authenticated:
        filters += [_anonymous_body(config), _anonymous_compression()]
    return filters


def role_filters(config: EdgeConfig) -> list[dict[str, Any]]:
    """Filters after the transcoder, before the router: what the caller may call."""
    filters: list[dict[str, Any]] = []
    if config.authenticated:
        filters.append(_rbac(config))
    if (limit := rate_limit(config, IDENTITY_HEADER)) is not None:
        filters.append(limit)
    return filters
