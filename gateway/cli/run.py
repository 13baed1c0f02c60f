"""Commands that run things: ``up`` (everything), ``serve`` (in front of a real cell) and
``gateway`` (one gateway process, as ``up`` and ``serve`` start it)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import threading
from pathlib import Path

from gateway.cell.settings import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_CELL,
    DEFAULT_MODEL_SERVER_PORT,
    CellSettings,
)
from gateway.client import ClientSettings
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings
from gateway.launch.envoy import (
    EnvoySettings,
    descriptor_set,
    docs_page,
    openapi_document,
    render,
    run_script,
    swagger_ui,
)
from gateway.launch.processes import StartupError
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from gateway.service import serve as serve_gateway
from gateway.service.args import (
    add_gateway_arguments,
    add_timeout_argument,
    default,
    settings_from_args,
)

STATE_DIR = Path(".saxgw")


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _add_front(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--port",
        type=int,
        default=default(EnvoySettings, "listen_port"),
        help="public HTTP/JSON + gRPC port (Envoy)",
    )
    cmd.add_argument(
        "--listen",
        default=default(EnvoySettings, "listen_address"),
        help="address Envoy listens on",
    )
    cmd.add_argument("--envoy-admin-port", type=int, default=default(EnvoySettings, "admin_port"))
    cmd.add_argument(
        "--gateway-ports",
        type=_ports,
        default=[DEFAULT_GATEWAY_PORT],
        help="comma-separated loopback ports, one gateway process each",
    )
    cmd.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="browser origin allowed by CORS (repeatable; * for any)",
    )
    cmd.add_argument("--gcs-endpoint", help="GCS API endpoint override (a storage emulator)")
    add_timeout_argument(cmd)
    cmd.add_argument("--log-dir", help="write each process's log here instead of stderr")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``up``, ``serve`` and ``gateway``."""
    up = commands.add_parser(
        "up",
        help="start the embedded Sax cell, the gateway and Envoy",
        description="Starts an embedded Sax cell, the gateway and Envoy; Ctrl-C stops them all.",
    )
    _add_front(up)
    up.add_argument("--sax-root", default=str(STATE_DIR / "sax-root"))
    up.add_argument("--fs-root", default=str(STATE_DIR / "fs-root"))
    up.add_argument("--cell", default=DEFAULT_CELL)
    up.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT)
    up.add_argument("--model-server-ports", type=_ports, default=[DEFAULT_MODEL_SERVER_PORT])
    up.set_defaults(handler=_up, embedded=True)

    serve = commands.add_parser(
        "serve",
        help="start the gateway and Envoy in front of an existing Sax cell",
        description="Usage: saxgw serve --sax-root gs://BUCKET/sax-root",
    )
    _add_front(serve)
    serve.add_argument("--sax-root", required=True, help="SAX_ROOT of the cell (dir or gs://)")
    serve.set_defaults(handler=_up, embedded=False)

    gw = commands.add_parser("gateway", help="run one gateway gRPC server (no Envoy)")
    add_gateway_arguments(gw)
    gw.set_defaults(handler=_gateway)

    cfg = commands.add_parser(
        "envoy-config",
        help="write Envoy's config and descriptor set (for containers)",
        description="Usage: saxgw envoy-config --gateway gateway:50051 --out /etc/envoy",
    )
    cfg.add_argument(
        "--gateway",
        action="append",
        required=True,
        help="host:port of a gateway (repeatable; a DNS name may cover replicas)",
    )
    cfg.add_argument(
        "--out", required=True, help="directory for envoy.yaml, descriptor.binpb, run-envoy.sh"
    )
    cfg.add_argument("--port", type=int, default=default(EnvoySettings, "listen_port"))
    cfg.add_argument("--admin-port", type=int, default=default(EnvoySettings, "admin_port"))
    cfg.add_argument("--cors-origin", action="append", default=[])
    cfg.set_defaults(handler=_envoy_config)


def _envoy_config(args: argparse.Namespace) -> int:
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
        listen_port=args.port,
        admin_address="127.0.0.1",  # admin stays private; probes use /healthz
        admin_port=args.admin_port,
        cors_origins=args.cors_origin,
    )
    (out / "envoy.yaml").write_text(render(settings, descriptor, openapi, docs))
    # The drain-on-SIGTERM wrapper the container runs Envoy through (see envoy-run.sh).
    (out / "run-envoy.sh").write_bytes(run_script().read_bytes())
    print(f"wrote {out / 'envoy.yaml'}, {descriptor}, {openapi}, the /docs page and run-envoy.sh")
    return 0


def _gateway(args: argparse.Namespace) -> int:
    asyncio.run(serve_gateway(settings_from_args(args)))
    return 0


def _up(args: argparse.Namespace) -> int:
    if args.embedded:
        for path in (args.sax_root, args.fs_root):
            if "://" not in path:
                Path(path).mkdir(parents=True, exist_ok=True)
    cell = None
    if args.embedded:
        cell = CellSettings(
            sax_root=args.sax_root,
            cell=args.cell,
            fs_root=args.fs_root,
            gcs_endpoint=args.gcs_endpoint,
            admin_port=args.admin_port,
            num_model_servers=len(args.model_server_ports),
            model_server_ports=tuple(args.model_server_ports),
        )
    client = ClientSettings(sax_root=args.sax_root, gcs_endpoint=args.gcs_endpoint)
    settings = StackSettings(
        gateway=GatewaySettings(client=client, default_timeout=args.default_timeout),
        cell=cell,
        gateway_ports=args.gateway_ports,
        envoy=EnvoySettings(
            gateway_endpoints=(),
            listen_address=args.listen,
            listen_port=args.port,
            admin_port=args.envoy_admin_port,
            cors_origins=args.cors_origin,
        ),
        log_dir=args.log_dir,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with Stack(settings) as stack:
            healthy = stack.wait_healthy(timeout=30)
            _print_banner(args, stack, healthy)
            supervisor = Supervisor(stack.group, report=lambda line: print(line, file=sys.stderr))
            while not stop.wait(0.5):
                supervisor.tick()  # a child that died is restarted; the others keep serving
            print("saxgw: stopping...", file=sys.stderr)
    except StartupError as exc:
        print(
            f"saxgw: {exc}. Hint: see --log-dir for each process's log; --port and friends "
            "choose other ports.",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_banner(args: argparse.Namespace, stack: Stack, healthy: bool) -> None:
    lines = [f"HTTP/JSON, gRPC, grpc-web  {stack.http_url}  (Envoy; /healthz)"]
    lines += [f"gateway gRPC               {a}" for a in stack.gateway_addresses]
    if args.embedded:
        admin = f"Sax admin ({args.cell})"
        lines.append(f"{admin:<27}127.0.0.1:{args.admin_port}")
        lines += [f"Sax model server           127.0.0.1:{p}" for p in args.model_server_ports]
    lines.append(f"SAX_ROOT                   {args.sax_root}")
    if not healthy:
        lines.append("warning: the gateway cannot reach the Sax cell yet (/healthz is 503)")
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)
