"""The listener's share of the config file: TLS and limits; and the template
values (gateway/launch/envoy.yaml.tmpl) that place the edge filters.

Each filter or option is one JSON line (valid YAML flow style), so the template keeps its
block layout and other work on it merges cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gateway.config import STREAM_TIMEOUT
from gateway.edge._envoy import EXTENSIONS, credential_filters, early_filters, role_filters
from gateway.edge._schema import EdgeConfig, Limits

#: Seconds Envoy waits past ``limits.max_stream_duration`` before it resets a request. The
#: gateway's own deadlines are capped at the limit (gateway/cli/_edge.py), so it ends a call
#: first, with a JSON error (a stream: an in-band error event, which a reset could not give);
#: Envoy's reset is the backstop for what the gateway does not bound (WatchAddresses, a hung
#: gateway). Its timer starts before the gateway's, hence the margin.
STREAM_BACKSTOP = 5.0


def stream_idle_timeout(limits: Limits, route_timeout: float) -> float:
    """How long a model stream (and an OpenAI call, which may be one) may move nothing before
    Envoy resets it: the gateway's stream timeout (as ``limits.max_stream_duration`` caps it)
    and the backstop, and at least a unary call's bound (``route_timeout``), which no call
    that moves reaches (a stream's tokens come within its deadline, an OpenAI stream's
    keep-alive every few seconds). One whose client stopped reading moves nothing once the
    windows are full, and the gateway cannot end it (grpc sends its status only after the
    replies it waits to send): under the routes' hour it held its client's stream and call
    slots, its model's and a few MB long past its deadline, until the limit's backstop
    (3605 s). Not the route's max_stream_duration: with one, Envoy rewrites a gRPC caller's
    grpc-timeout, to its own bound or (with grpc_timeout_header_max) answers it itself."""
    limit = limits.max_stream_duration
    streams = STREAM_TIMEOUT if limit <= 0 else min(STREAM_TIMEOUT, limit)
    return max(streams + STREAM_BACKSTOP, route_timeout)


def tls_socket(config: EdgeConfig, sds_dir: Path) -> dict[str, Any] | None:
    """The public listener's TLS, from SDS files that Envoy re-reads when the files change."""
    tls = config.tls
    if tls is None:
        return None
    sds_dir.mkdir(parents=True, exist_ok=True)

    def secret(name: str, body: dict[str, Any], watched: Path) -> dict[str, Any]:
        resource = {"@type": EXTENSIONS + "transport_sockets.tls.v3.Secret", "name": name, **body}
        path = sds_dir / f"{name}.json"
        path.write_text(json.dumps({"resources": [resource]}))
        # Watching the directory catches the atomic rename that renewals (and Kubernetes
        # secret volumes) use to swap in new files.
        source = {
            "path_config_source": {"path": str(path), "watched_directory": {"path": str(sds_dir)}}
        }
        return {"name": name, "sds_config": {**source, "resource_api_version": "V3"}}

    cert = secret(
        "public_cert",
        {
            "tls_certificate": {
                "certificate_chain": {"filename": str(tls.cert_file)},
                "private_key": {"filename": str(tls.key_file)},
                "watched_directory": {"path": str(tls.cert_file.parent)},
            }
        },
        tls.cert_file.parent,
    )
    context: dict[str, Any] = {
        "alpn_protocols": ["h2", "http/1.1"],
        "tls_certificate_sds_secret_configs": [cert],
    }
    socket: dict[str, Any] = {"common_tls_context": context}
    if tls.client_ca_file is not None:
        context["validation_context_sds_secret_config"] = secret(
            "client_ca",
            {
                "validation_context": {
                    "trusted_ca": {"filename": str(tls.client_ca_file)},
                    "watched_directory": {"path": str(tls.client_ca_file.parent)},
                }
            },
            tls.client_ca_file.parent,
        )
        socket["require_client_certificate"] = True
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": EXTENSIONS + "transport_sockets.tls.v3.DownstreamTlsContext",
            **socket,
        },
    }


def _lines(items: Iterable[Any], prefix: str, indent: int) -> str:
    pad = "\n" + " " * indent
    return pad.join(prefix + json.dumps(item) for item in items)


def duration(seconds: float) -> str:
    """``seconds`` as Envoy reads a duration: plain decimal seconds. Not ``{:g}``, whose
    ``1e+06s`` for 11.6 days (or ``1e-07s``) Envoy refuses at start."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


#: Envoy's heap pressure (a share of ``limits.max_heap_bytes``) at which it starts resetting
#: the streams that hold the most buffered bytes, all of them by the second; and past which it
#: refuses new requests (503).
HEAP_RESETS = (0.85, 0.95)
HEAP_REFUSALS = 0.98
#: Streams holding 2**20 bytes (1 MiB) or more are the ones resets choose from: an SSE stream
#: holds a few KB, a body being buffered up to ``limits.max_request_bytes``.
TRACKED_ACCOUNT_POWER_OF_TWO = 20


def overload_values(limits: Limits) -> dict[str, str]:
    """The overload manager's heap watch (template values): a monitor, and what Envoy does as
    its heap nears ``limits.max_heap_bytes``. Credentials are checked before any body is held
    (`_envoy`), but a caller with one may still open 256 streams a connection of up to
    ``max_request_bytes`` each: this bounds what all callers together make Envoy hold."""
    if not limits.max_heap_bytes:  # 0: unwatched
        return {"HEAP_MONITOR": "", "OVERLOAD_ACTIONS": "[]", "BUFFER_ACCOUNTS": "null"}
    heap = "envoy.resource_monitors.fixed_heap"
    monitor = {
        "name": heap,
        "typed_config": {
            "@type": EXTENSIONS + "resource_monitors.fixed_heap.v3.FixedHeapConfig",
            "max_heap_size_bytes": limits.max_heap_bytes,
        },
    }
    scaling, saturation = HEAP_RESETS
    actions = [
        {
            "name": "envoy.overload_actions.reset_high_memory_stream",
            "triggers": [
                {
                    "name": heap,
                    "scaled": {"scaling_threshold": scaling, "saturation_threshold": saturation},
                }
            ],
        },
        {
            "name": "envoy.overload_actions.stop_accepting_requests",
            "triggers": [{"name": heap, "threshold": {"value": HEAP_REFUSALS}}],
        },
    ]
    return {
        "HEAP_MONITOR": "- " + json.dumps(monitor),
        "OVERLOAD_ACTIONS": json.dumps(actions),
        "BUFFER_ACCOUNTS": json.dumps(
            {"minimum_account_to_track_power_of_two": TRACKED_ACCOUNT_POWER_OF_TWO}
        ),
    }


def edge_values(config: EdgeConfig, origins: Sequence[str], sds_dir: Path) -> dict[str, str]:
    """Template values for the edge: YAML lines at the template's indentation. ``origins``
    are the browser origins CORS allows (flags and the file's ``cors`` together)."""
    # JSON bodies for Envoy's own replies come from the template's one local_reply_config
    # (gateway/launch/_replies.py: local_reply_mappers), for these statuses too.
    limits = config.limits
    # Slow or idle clients (slowloris) do not hold connections forever.
    hcm: dict[str, Any] = {
        "max_request_headers_kb": limits.max_request_headers_kb,
        "request_headers_timeout": duration(limits.request_headers_timeout),
        # Paths as the rules that match them mean them: without these, `/docs/../<method>`
        # passed the open `/docs` rules yet named a method, and `//x` escaped `/x`'s.
        "normalize_path": True,
        "merge_slashes": True,
    }
    # The whole request, body included, whatever its route: the stream idle timeout (300 s)
    # bounds a body that stops coming on unary routes only, as the streams' routes set
    # their own idle timeout (an hour, or none), which Envoy applies from the headers on,
    # before the caller has sent its body. Disarmed once the request has arrived (or its
    # reply has begun), so a long reply is never cut; no method here streams its requests
    # but reflection, whose reply begins with its first message.
    if limits.request_timeout > 0:  # 0: none
        hcm["request_timeout"] = duration(limits.request_timeout)
    common: dict[str, str] = {"idle_timeout": duration(limits.idle_timeout)}
    if limits.max_stream_duration > 0:  # 0: unbounded
        common["max_stream_duration"] = duration(limits.max_stream_duration + STREAM_BACKSTOP)
    # Envoy 1.40 drains such a connection: GOAWAY, or `Connection: close` on the reply in
    # flight, and streams already open run to their end (tests/e2e/security/test_limits.py).
    if limits.max_connection_duration > 0:  # 0: for good
        common["max_connection_duration"] = duration(limits.max_connection_duration)
    hcm["common_http_protocol_options"] = common
    if limits.trusted_proxy_hops:
        hcm["xff_num_trusted_hops"] = limits.trusted_proxy_hops
    socket = tls_socket(config, sds_dir)
    return {
        "EARLY_FILTERS": _lines(early_filters(origins), "- ", 10),
        "CREDENTIAL_FILTERS": _lines(credential_filters(config), "- ", 10),
        "ROLE_FILTERS": _lines(role_filters(config), "- ", 10),
        "EDGE_HCM_OPTIONS": "\n          ".join(f"{k}: {json.dumps(v)}" for k, v in hcm.items()),
        "TRANSPORT_SOCKET": f"transport_socket: {json.dumps(socket)}" if socket else "",
        **overload_values(limits),
    }
