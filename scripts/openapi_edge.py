"""What the edge adds to the routes of the OpenAPI document (scripts/openapi.py): the
credentials it takes and the routes that need none, and its refusals (401, 403, 429) with
their bodies and headers.

Envoy checks credentials on every route but the open ones (`gateway.edge._paths.OPEN`: GetInfo,
`/openapi.json`, `/docs`, `/healthz`), in `Authorization: Bearer <API key or JWT>` or
`x-api-key` (docs/security.md; gateway/edge/_envoy.py). A stack whose config names no API keys
and no JWT issuers asks for none: the schemes say so, as the document is the same for both.
The example bodies are recorded from a stack, in proto/saxgateway/v1/examples.json ("errors").
"""

from __future__ import annotations

from typing import Any

from gateway.edge._paths import OPEN
from gateway.launch._replies import HEALTHZ_DOWN

Schema = dict[str, Any]
_ASKED = (
    "Needed only when the gateway's config (`--config`) names API keys or JWT issuers "
    "(docs/security.md); a stack without them takes every call without credentials."
)
SCHEMES: Schema = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <credential>`: an API key of the config's "
        "`auth.api_keys`, or a JWT of one of its `auth.jwt` issuers (with an `exp`). The scheme "
        "is case-insensitive. " + _ASKED,
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An API key of the config's `auth.api_keys` (no JWT here). " + _ASKED,
    },
}
#: Either scheme will do (the document's default; open routes say `security: []`).
CREDENTIALS: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]

_ERROR = "#/components/schemas/Error"
_OPENAI_ERROR = "#/components/schemas/openai.Error"
_REQUEST_ID = {"x-request-id": {"$ref": "#/components/headers/x-request-id"}}


def is_open(grpc_method: str) -> bool:
    """Whether Envoy lets a call of ``grpc_method`` (``/package.Service/Method``) through
    without credentials."""
    return grpc_method in OPEN


def headers() -> dict[str, Schema]:
    """The 401's and the 429's headers, for ``components.headers``."""
    # Not on a 401 or 403: Envoy refuses a credential or a role before the bucket, which
    # neither counts the call nor says anything of a bucket the caller may not have.
    ratelimit = (
        "Envoy's per-client token bucket (`quotas.rate`, `clients.<id>.rate`), on every reply "
        "the bucket counted (not a 401 or 403, refused before it, which take no token), while "
        "a rate applies (a caller none applies to, where another client has one, gets the "
        "listener-wide bucket's, `x-ratelimit-limit: 1000000`, which limits nothing): "
    )
    return {
        "www-authenticate": {
            "description": 'On a 401: the scheme to authenticate with, `Bearer realm="<the '
            'request\'s URL without its query>"`, and `error="invalid_token"` when a '
            "credential was sent (a JWT's comes from Envoy's JWT filter and says why).",
            "schema": {"type": "string"},
        },
        "retry-after": {
            "description": "On a 429: seconds to wait before trying again: 1, but for a "
            "client's rate (`quotas.rate`, `clients.<id>.rate`), the time its own bucket takes "
            "to hold a token again (10 for one call in 10 s).",
            "schema": {"type": "integer", "minimum": 0},
        },
        "x-ratelimit-limit": {
            "description": ratelimit + "its burst.",
            "schema": {"type": "integer", "minimum": 0},
        },
        "x-ratelimit-remaining": {
            "description": ratelimit + "the tokens left.",
            "schema": {"type": "integer", "minimum": 0},
        },
        "x-ratelimit-reset": {
            "description": ratelimit + "seconds until it refills.",
            "schema": {"type": "integer", "minimum": 0},
        },
    }


def _examples(errors: Schema, *names: str) -> Schema:
    return {name: {"value": errors[name]} for name in names}


def responses(errors: Schema) -> dict[str, Schema]:
    """``components.responses``: the edge's 401, 403 and 429, in the gateway's error shape
    and, for the OpenAI routes, in OpenAI's envelope; ``errors`` are the recorded bodies."""
    limited = {
        "retry-after": {"$ref": "#/components/headers/retry-after"},
        **{
            name: {"$ref": f"#/components/headers/{name}"}
            for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
        },
    }
    texts = {
        "Unauthenticated": "UNAUTHENTICATED: no credential, or one the edge does not accept "
        "(an unknown API key; a JWT expired, badly signed, of an unknown issuer, for another "
        "audience, or without `exp`). The message says why where Envoy knows it "
        "(`Jwt is expired`).",
        "PermissionDenied": "PERMISSION_DENIED: the caller's roles do not allow the call "
        "(`RBAC: access denied`: `admin` for publish, update, unpublish and setacl, and for the "
        "config's `admin_only` reads; `data` for the rest), or the gateway refused it the model "
        "(the client's `models` list, the model's Sax ACLs). Also a browser request whose "
        "`Origin` is not allowed.",
        "RateLimited": "RESOURCE_EXHAUSTED: the client's rate (`local_rate_limited`, Envoy's "
        "token bucket), or its or the model's calls in flight, are at their limit, or the "
        "model's replicas stayed overloaded through the gateway's retries (`--overloaded-after`, "
        "1 s: `/sax/test/lm2b is overloaded; retry later (...)`). Retry after `retry-after` "
        "seconds.",
    }
    native = {
        "Unauthenticated": ("UNAUTHENTICATED",),
        "PermissionDenied": ("PERMISSION_DENIED", "PERMISSION_DENIED_MODEL"),
        "RateLimited": ("RESOURCE_EXHAUSTED",),
    }
    result: dict[str, Schema] = {}
    challenge = {"www-authenticate": {"$ref": "#/components/headers/www-authenticate"}}
    for name, examples in native.items():
        extra = {"RateLimited": limited, "Unauthenticated": challenge}.get(name, {})
        result[name] = {
            "description": texts[name],
            "headers": {**_REQUEST_ID, **extra},
            "content": {
                "application/json": {
                    "schema": {"$ref": _ERROR},
                    "examples": _examples(errors, *examples),
                }
            },
        }
        openai = f"openai.{examples[0]}"
        result[f"openai.{name}"] = {
            "description": texts[name] + " In OpenAI's envelope.",
            "headers": {**_REQUEST_ID, **extra},
            "content": {
                "application/json": {
                    "schema": {"$ref": _OPENAI_ERROR},
                    "examples": _examples(errors, openai),
                }
            },
        }
    return result


def refusals(grpc_method: str, *, openai: bool = False) -> dict[str, Schema]:
    """The edge's refusals of a call of ``grpc_method``, by HTTP status: 401 and 403 unless it
    is open, and 429 always (a caller without credentials has a rate too, by address)."""
    prefix = "openai." if openai else ""
    found = {} if is_open(grpc_method) else {"401": "Unauthenticated", "403": "PermissionDenied"}
    found["429"] = "RateLimited"
    return {
        status: {"$ref": f"#/components/responses/{prefix}{name}"} for status, name in found.items()
    }


TAG = "Edge"
TAG_DESCRIPTION = "Routes Envoy answers itself, without a gateway hop; open to everyone."
_HEALTHZ_DOWN_EXAMPLE = {"code": 14, "message": HEALTHZ_DOWN}


# What Envoy sends with each file it serves (/openapi.json, /docs and its files), and the 304
# a request naming the ETag gets (envoy.yaml.tmpl): a client generated from the document took
# the 304, which only the description named, for an error.
_FILE_HEADERS: dict[str, Schema] = {
    **_REQUEST_ID,
    "etag": {
        "description": "The file's weak ETag (a hash of its bytes): send it back as "
        "If-None-Match to learn whether the copy you hold is current.",
        "required": True,
        "schema": {"type": "string", "pattern": '^W/"[0-9a-f]+"$'},
    },
    "cache-control": {
        "description": "`no-cache`: a copy may be kept, and is to be checked (If-None-Match) "
        "before each use.",
        "required": True,
        "schema": {"type": "string", "const": "no-cache"},
    },
}
_IF_NONE_MATCH: Schema = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "The ETag of the copy the client holds: a 304 without the file if the file "
    "is still that one.",
}
_NOT_MODIFIED: Schema = {
    "description": "Not Modified: If-None-Match names the file's current ETag, or is *; no body.",
    "headers": _FILE_HEADERS,
}


def paths() -> dict[str, dict[str, Schema]]:
    """The routes Envoy answers itself (gateway/launch/envoy.yaml.tmpl): `/healthz`, this
    document and the /docs page; open, like GetInfo."""
    request_id = {"headers": _REQUEST_ID}
    limited = {"429": {"$ref": "#/components/responses/RateLimited"}}

    def op(op_id: str, summary: str, description: str, responses: Schema) -> Schema:
        return {
            "tags": [TAG],
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "security": [],
            "responses": responses,
        }

    def file_op(op_id: str, summary: str, description: str, ok: Schema) -> Schema:
        """A file's route: its 200 (``ok``) with the file's headers, its 304 and its 429."""
        responses = {"200": {**ok, "headers": _FILE_HEADERS}, "304": _NOT_MODIFIED, **limited}
        return {**op(op_id, summary, description, responses), "parameters": [_IF_NONE_MATCH]}

    return {
        "/healthz": {
            "get": op(
                "Healthz",
                "Whether the stack can take calls",
                "Answered by Envoy from its health checks of the gateway processes (gRPC "
                "health every 2 s; two failures in a row mark one down), whatever the method, "
                "the Host, the credentials or a query string: 200 with an empty body while at "
                "least one gateway process is healthy, 503 when none is. For load balancers and "
                "Kubernetes probes.",
                {
                    "200": {"description": "A gateway process can take calls.", **request_id},
                    "503": {
                        "description": "No gateway process is healthy (UNAVAILABLE).",
                        **request_id,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _ERROR},
                                "example": {
                                    **_HEALTHZ_DOWN_EXAMPLE,
                                    "details": [
                                        {
                                            "@type": "type.googleapis.com/google.rpc.RequestInfo",
                                            "request_id": "3f0c2b9e-5d1a-4c7e-9b8f-2a6d4e1c0b57",
                                        }
                                    ],
                                    "request_id": "3f0c2b9e-5d1a-4c7e-9b8f-2a6d4e1c0b57",
                                },
                            }
                        },
                    },
                },
            )
        },
        "/openapi.json": {
            "get": file_op(
                "GetOpenAPIDocument",
                "This document",
                "The OpenAPI document of the gateway's HTTP/JSON API (this one: "
                "openapi/openapi.json of the release the stack runs). GET and HEAD only "
                "(another method is a 405), as for the /docs page and its files; each is gzipped "
                "for a client that takes it (`Accept-Encoding: gzip`), and has an `ETag` with "
                "`Cache-Control: no-cache`: a request whose `If-None-Match` names it is a 304.",
                {
                    "description": "The document.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "description": "An OpenAPI document."}
                        }
                    },
                },
            )
        },
        "/docs": {
            "get": file_op(
                "GetDocsPage",
                "This API's page",
                'Swagger UI over `/openapi.json`: every route, with "Try it out" against this '
                'gateway (on a stack with credentials, enter one under "Authorize"). Its files '
                "(`/docs/docs.js`, `/docs/swagger-ui-bundle.js`, `/docs/swagger-ui.css`) are "
                "served beside it, and `/docs/` redirects here.",
                {
                    "description": "The page.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
            )
        },
    }
