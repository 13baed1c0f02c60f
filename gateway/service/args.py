"""The flags of one gateway process (``saxgw gateway``) <-> ``GatewaySettings``, in one place:
the CLI parses them, launchers build them from settings, and both agree by construction.

    argv = gateway_argv(settings)            # [python, -m, gateway.cli, gateway, --sax-root=...]
    settings = settings_from_args(parser.parse_args(argv[4:]))   # the same settings back
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from gateway.client import ClientSettings
from gateway.common.logs import FORMATS
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings, TelemetrySettings


def default(cls: type[Any], name: str) -> Any:
    """The default of a settings field, so that a flag's default is the field's."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``saxgw gateway``."""
    parser.add_argument("--sax-root", required=True, help="SAX_ROOT of the cell (dir or gs://)")
    parser.add_argument("--gcs-endpoint", help="GCS API endpoint override (a storage emulator)")
    parser.add_argument("--host", default=default(GatewaySettings, "host"))
    parser.add_argument("--port", type=int, default=DEFAULT_GATEWAY_PORT)
    add_timeout_argument(parser)
    parser.add_argument(
        "--grace-period", type=float, default=default(GatewaySettings, "grace_period")
    )
    parser.add_argument(
        "--metrics-dir", help="directory shared with the other gateway processes and `saxgw ops`"
    )
    add_telemetry_arguments(parser)


def add_telemetry_arguments(parser: argparse.ArgumentParser) -> None:
    """Metrics, tracing and log flags, shared by ``gateway``, ``up`` and ``serve``."""
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="no per-call metrics (to measure what they cost)",
    )
    parser.add_argument(
        "--no-cost-header",
        dest="cost_header",
        action="store_false",
        help="send unary calls' x-sax-query-cost-ms as a gRPC trailer, not a header "
        "(saves a send per call; HTTP/JSON clients then do not see it)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        # The one place the standard OpenTelemetry variable is read.
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        help="export traces to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317 "
        "(default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no tracing)",
    )
    parser.add_argument(
        "--trace-sample-ratio",
        type=float,
        default=default(TelemetrySettings, "trace_sample_ratio"),
        help="share of requests traced when the caller sent no traceparent (default 1)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=default(TelemetrySettings, "log_format"),
        help="json lines, or text for people (auto: text on a terminal, else json)",
    )


def telemetry_from_args(args: argparse.Namespace) -> TelemetrySettings:
    """The telemetry settings the flags describe."""
    return TelemetrySettings(
        metrics=args.metrics,
        cost_header=args.cost_header,
        metrics_dir=getattr(args, "metrics_dir", None),
        otlp_endpoint=args.otlp_endpoint,
        trace_sample_ratio=args.trace_sample_ratio,
        log_format=args.log_format,
    )


def add_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """``--default-timeout``, shared by ``gateway``, ``up`` and ``serve``."""
    parser.add_argument(
        "--default-timeout",
        type=float,
        default=default(GatewaySettings, "default_timeout"),
        help="deadline (s) of calls that set none",
    )


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """The settings the flags describe."""
    return GatewaySettings(
        client=ClientSettings(sax_root=args.sax_root, gcs_endpoint=args.gcs_endpoint),
        host=args.host,
        port=args.port,
        default_timeout=args.default_timeout,
        grace_period=args.grace_period,
        telemetry=telemetry_from_args(args),
    )


def gateway_argv(settings: GatewaySettings) -> list[str]:
    """The command that runs one gateway process with ``settings`` (flags as parsed above)."""
    argv = [sys.executable, "-m", "gateway.cli", "gateway", f"--sax-root={settings.sax_root}"]
    if settings.client.gcs_endpoint:
        argv.append(f"--gcs-endpoint={settings.client.gcs_endpoint}")
    return [
        *argv,
        f"--host={settings.host}",
        f"--port={settings.port}",
        f"--default-timeout={settings.default_timeout!r}",
        f"--grace-period={settings.grace_period!r}",
        *_telemetry_argv(settings.telemetry),
    ]


def _telemetry_argv(telemetry: TelemetrySettings) -> list[str]:
    argv = [f"--log-format={telemetry.log_format}"]
    if not telemetry.metrics:
        argv.append("--no-metrics")
    if not telemetry.cost_header:
        argv.append("--no-cost-header")
    if telemetry.metrics_dir:
        argv.append(f"--metrics-dir={telemetry.metrics_dir}")
    if telemetry.otlp_endpoint:
        argv.append(f"--otlp-endpoint={telemetry.otlp_endpoint}")
        argv.append(f"--trace-sample-ratio={telemetry.trace_sample_ratio!r}")
    return argv
