"""``saxgw envoy-config``: writes what a container runs Envoy with (its config, the
descriptor set, the OpenAPI document and /docs page, and the drain-on-SIGTERM wrapper), for a
gateway that runs elsewhere; nothing is started.

    saxgw envoy-config --gateway gateway:50051 --out /etc/envoy
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from gateway.cli import _edge
from gateway.common import flags
from gateway.config import GatewaySettings
from gateway.edge import EdgeConfig
from gateway.launch.envoy import (
    EnvoySettings,
    descriptor_set,
    docs_page,
    openapi_document,
    render,
    route_timeout_over,
    run_script,
    swagger_ui,
    within_open_files,
)
from gateway.launch.tuning import envoy_open_files
from gateway.service.args import add_config_argument, default
from gateway.service.telemetry_args import (
    add_otlp_certificate_argument,
    otlp_certificate,
    otlp_headers,
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``envoy-config``."""
    cfg = commands.add_parser(
        "envoy-config",
        help="write Envoy's config and descriptor set (for containers)",
        description="Usage: saxgw envoy-config --gateway gateway:50051 --out /etc/envoy",
    )
    cfg.add_argument(
        "--gateway",
        action="append",
        required=True,
        type=flags.host_port,
        help="host:port of a gateway (repeatable; a DNS name may cover replicas)",
    )
    cfg.add_argument(
        "--out",
        required=True,
        help="directory for envoy.yaml, descriptor.binpb, openapi.json, the /docs page and "
        "run-envoy.sh",
    )
    cfg.add_argument("--port", type=flags.port, default=default(EnvoySettings, "listen_port"))
    cfg.add_argument(
        "--listen",
        type=flags.ip_address,
        default="::",
        help="address Envoy listens on in the container: :: is every address of both families, "
        "as a pod on an IPv4, IPv6 or dual-stack cluster is reached (0.0.0.0: IPv4 only, for "
        "a kernel without IPv6)",
    )
    cfg.add_argument("--admin-port", type=flags.port, default=default(EnvoySettings, "admin_port"))
    cfg.add_argument("--cors-origin", action="append", default=[], type=_edge.allowed_origin_flag)
    cfg.add_argument(
        "--default-timeout",
        type=flags.seconds,
        default=default(GatewaySettings, "default_timeout"),
        help="the gateways' --default-timeout: Envoy lets a unary call run longer than that "
        "(its route timeout: at least 300 s), so that the gateway's own answer ends one that "
        "runs out",
    )
    add_config_argument(cfg)
    cfg.add_argument(
        "--otlp-endpoint",
        type=flags.endpoint,
        # As the gateway's flag: one variable on the pod traces both of its containers.
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        help="OTLP/gRPC collector for Envoy's spans (default: $OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    add_otlp_certificate_argument(cfg)
    cfg.set_defaults(handler=_envoy_config)


def _envoy_config(args: argparse.Namespace) -> int:
    config = _edge.load(args)
    if config is None:
        return 2
    try:
        return _write_envoy_config(args, config.edge)
    except OSError as exc:  # --out not writable, or a file: one line, not a traceback
        print(f"saxgw envoy-config: cannot write --out {args.out}: {exc.strerror}", file=sys.stderr)
        return 1


def _write_envoy_config(args: argparse.Namespace, edge: EdgeConfig) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    descriptor = out / "descriptor.binpb"
    descriptor.write_bytes(descriptor_set().read_bytes())
    openapi = out / "openapi.json"
    openapi.write_bytes(openapi_document().read_bytes())
    docs = (out / "docs", out / "swagger-ui")
    for source, target in zip((docs_page(), swagger_ui()), docs, strict=True):
        shutil.copytree(source, target, dirs_exist_ok=True)
    settings = EnvoySettings(
        gateway_endpoints=args.gateway,
        listen_address=args.listen,  # in a container: reached by other containers and pods
        listen_port=args.port,
        admin_address="127.0.0.1",  # admin stays private; probes use ops /readyz
        admin_port=args.admin_port,
        cors_origins=args.cors_origin,
        route_timeout=route_timeout_over(args.default_timeout),
        otlp_endpoint=args.otlp_endpoint,
        otlp_certificate=otlp_certificate(args.otlp_endpoint, args.otlp_certificate),
        otlp_headers=otlp_headers(args.otlp_endpoint),
    )
    settings = _edge.envoy_settings(settings, edge)
    # This container's hard limit stands for Envoy's: a pod's containers get the same one
    # from the runtime (kubelet sets none), and Compose's services the engine's default.
    settings = within_open_files(settings, envoy_open_files())
    text = render(settings, descriptor, openapi, docs, secrets_dir=out)
    if edge.authenticated or settings.otlp_headers:  # keys in it: readable by its owner only
        _edge.write_private(out / "envoy.yaml", text)
    else:
        (out / "envoy.yaml").write_text(text)
    # The drain-on-SIGTERM wrapper the container runs Envoy through (see run-envoy.sh).
    (out / "run-envoy.sh").write_bytes(run_script().read_bytes())
    print(f"wrote {out / 'envoy.yaml'}, {descriptor}, {openapi}, the /docs page and run-envoy.sh")
    if edge.direct.generate:
        # Its control plane runs in `saxgw up|serve` only: said, not silently dropped.
        print(
            "saxgw envoy-config: direct.generate is not rendered here: this Envoy sends every"
            " call to the gateways (direct mode runs in saxgw up and saxgw serve)",
            file=sys.stderr,
        )
    return 0
