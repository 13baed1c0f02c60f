"""The telemetry flags (metrics, traces, logs) <-> ``TelemetrySettings``, shared by
``saxgw gateway``, ``up`` and ``serve``; `gateway.service.args.gateway_argv` hands them on.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from urllib.parse import quote

from opentelemetry.util.re import parse_env_headers

from gateway.common.flags import endpoint, pem_file, ratio, tls_endpoint
from gateway.common.logs import FORMATS
from gateway.config import TelemetrySettings

_DEFAULTS = TelemetrySettings()


def add_telemetry_arguments(parser: argparse.ArgumentParser) -> None:
    """Metrics, tracing and log flags."""
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="no per-call metrics (to measure what they cost)",
    )
    parser.add_argument(
        "--cost-header",
        action=argparse.BooleanOptionalAction,
        default=TelemetrySettings.cost_header,
        help="the gateway itself sends unary calls' x-sax-query-cost-ms as a header (one more "
        "send per call); without it, a trailer, which the stack's Envoy copies into the "
        "response headers (needed only without this project's Envoy config)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        type=endpoint,
        # The one place the standard OpenTelemetry variable is read: a flag's default, at
        # the CLI; everything below gets it from the settings.
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        help="export traces to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317 "
        "(default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no tracing)",
    )
    add_otlp_certificate_argument(parser)
    parser.add_argument(
        "--trace-sample-ratio",
        type=ratio,
        default=_DEFAULTS.trace_sample_ratio,
        help="share of requests traced when the caller sent no traceparent (default 1)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=_DEFAULTS.log_format,
        help="json lines, or text for people (auto: text on a terminal, else json)",
    )


def add_otlp_certificate_argument(parser: argparse.ArgumentParser) -> None:
    """``--otlp-certificate``, of the gateway's commands and of ``saxgw envoy-config``."""
    parser.add_argument(
        "--otlp-certificate",
        type=pem_file,
        metavar="PEM",
        help="CA certificates an https:// collector's certificate is checked against "
        "(default: $OTEL_EXPORTER_OTLP_CERTIFICATE; unset: the system's roots)",
    )


def telemetry_from_args(args: argparse.Namespace) -> TelemetrySettings:
    """The telemetry settings the flags describe."""
    return TelemetrySettings(
        metrics=args.metrics,
        cost_header=args.cost_header,
        metrics_dir=getattr(args, "metrics_dir", None),
        otlp_endpoint=args.otlp_endpoint,
        otlp_certificate=otlp_certificate(args.otlp_endpoint, args.otlp_certificate),
        otlp_headers=otlp_headers(args.otlp_endpoint),
        trace_sample_ratio=args.trace_sample_ratio,
        log_format=args.log_format,
    )


#: Where a gateway process finds the export headers `saxgw up|serve` read: its environment,
#: not its command line, which every ``ps`` shows.
HEADERS_VARIABLE = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"


def otlp_headers(endpoint: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata every export to ``endpoint`` carries (a hosted collector's key): the
    variables OpenTelemetry's exporters read, traces' own first, parsed as they parse them;
    none without a collector."""
    if not endpoint:
        return ()
    text = os.environ.get(HEADERS_VARIABLE) or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS")
    return tuple(parse_env_headers(text or "", liberal=True).items())


def headers_variable(headers: Sequence[tuple[str, str]]) -> str:
    """``headers`` as `otlp_headers` reads them back from ``HEADERS_VARIABLE``."""
    return ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in headers)


def otlp_certificate(endpoint: str | None, flag: str | None) -> str | None:
    """The CA file for a TLS collector: the flag's, else the standard OpenTelemetry variable's
    (read only for an ``https://`` endpoint, so a stale variable cannot stop a gateway that
    does not use it; checked as the flag is)."""
    if flag or not tls_endpoint(endpoint):
        return flag
    variable = os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE")
    if not variable:
        return None
    try:
        return pem_file(variable)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"saxgw: $OTEL_EXPORTER_OTLP_CERTIFICATE: {exc}") from exc


def telemetry_argv(telemetry: TelemetrySettings) -> list[str]:
    """The flags that give a gateway process ``telemetry`` back."""
    argv = [f"--log-format={telemetry.log_format}"]
    if not telemetry.metrics:
        argv.append("--no-metrics")
    if telemetry.cost_header:
        argv.append("--cost-header")
    if telemetry.metrics_dir:
        argv.append(f"--metrics-dir={telemetry.metrics_dir}")
    if telemetry.otlp_endpoint:
        argv.append(f"--otlp-endpoint={telemetry.otlp_endpoint}")
        if telemetry.otlp_certificate:
            argv.append(f"--otlp-certificate={telemetry.otlp_certificate}")
        argv.append(f"--trace-sample-ratio={telemetry.trace_sample_ratio!r}")
    return argv
