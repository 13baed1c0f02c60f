"""Commands that run things: ``up`` (everything), ``serve`` (in front of a real cell) and
``gateway`` (one gateway process, as ``up`` and ``serve`` start it)."""

from __future__ import annotations

import argparse
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
from gateway.cli import _edge, _workers
from gateway.cli._listen import cannot_listen
from gateway.common import flags
from gateway.common.listen import ListenError
from gateway.common.slottable import TableError
from gateway.common.storage import StorageSetupError, make_dirs
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings
from gateway.launch import tuning
from gateway.launch.envoy import EnvoySettings
from gateway.launch.ports import PortClaimed, claim_ports, holder
from gateway.launch.processes import StartupError
from gateway.launch.readiness import busy_ports, restored_models
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from gateway.service import serve as serve_gateway
from gateway.service.args import (
    add_config_argument,
    add_deadline_arguments,
    add_gateway_arguments,
    client_settings_from_args,
    default,
    settings_from_args,
)
from gateway.service.telemetry_args import add_telemetry_arguments, telemetry_from_args

STATE_DIR = Path(".saxgw")


def embedded_fs_root(sax_root: str, fs_root: str | None) -> str | None:
    """The fs root `up` gives the embedded cell: ``--fs-root``; without it, the default
    SAX_ROOT's twin under STATE_DIR, and for any other SAX_ROOT none (the cell's own default,
    SAX_ROOT/fsroot): one shared default made two stacks overwrite each other's state."""
    if fs_root is not None:
        return fs_root
    return str(STATE_DIR / "fs-root") if sax_root == str(STATE_DIR / "sax-root") else None


def _add_front(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--port",
        type=flags.port,
        default=default(EnvoySettings, "listen_port"),
        help="public HTTP/JSON + gRPC port (Envoy)",
    )
    cmd.add_argument(
        "--listen",
        type=flags.ip_address,
        default=default(EnvoySettings, "listen_address"),
        help="address Envoy listens on (0.0.0.0: every interface)",
    )
    cmd.add_argument(
        "--envoy-admin-port",
        type=flags.port,
        default=default(EnvoySettings, "admin_port"),
        help="Envoy's admin port (loopback only)",
    )
    cmd.add_argument(
        "--gateway-ports",
        type=flags.ports,
        default=str(DEFAULT_GATEWAY_PORT),  # argparse parses a string default: "50051"
        help="comma-separated loopback ports, one gateway process each",
    )
    cmd.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        type=_edge.allowed_origin_flag,
        help="browser origin allowed by CORS (repeatable; * for any)",
    )
    cmd.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        type=_edge.allowed_host_flag,
        help="a host name Envoy answers on loopback besides localhost and 127.0.0.1, such as "
        "a tunnel's or /etc/hosts' (repeatable; * for any); other names are refused, against "
        "DNS rebinding",
    )
    cmd.add_argument(
        "--gcs-endpoint",
        type=flags.endpoint,
        help="GCS API endpoint override (a storage emulator)",
    )
    add_deadline_arguments(cmd)
    add_config_argument(cmd)
    cmd.add_argument("--log-dir", help="write each process's log here instead of stderr")
    cmd.add_argument(
        "--ops-port",
        type=flags.optional_port,
        default=8889,
        help="ops port serving /metrics for the gateway(s) and Envoy (0: none)",
    )
    cmd.add_argument(
        "--ops-listen",
        type=flags.ip_address,
        default="127.0.0.1",
        help="address the ops port listens on (loopback unless asked: /metrics has no auth)",
    )
    add_telemetry_arguments(cmd)
    _workers.add_arguments(cmd)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``up``, ``serve`` and ``gateway``."""
    up = commands.add_parser(
        "up",
        help="start the embedded Sax cell, the gateway and Envoy",
        description="Starts an embedded Sax cell, the gateway and Envoy; Ctrl-C stops them all.",
    )
    _add_front(up)
    up.add_argument(
        "--sax-root",
        default=str(STATE_DIR / "sax-root"),
        help="the embedded cell's SAX_ROOT (dir or gs://); kept across runs",
    )
    up.add_argument(
        "--fs-root",
        help=(
            "where a new embedded cell keeps its state (dir or gs://); default: "
            f"{STATE_DIR / 'fs-root'} beside the default --sax-root, else SAX_ROOT/fsroot"
        ),
    )
    up.add_argument(
        "--cell", type=flags.cell_id, default=DEFAULT_CELL, help="the embedded cell's ID"
    )
    up.add_argument(
        "--admin-port",
        type=flags.port,
        default=DEFAULT_ADMIN_PORT,
        help="the embedded cell's Sax admin port",
    )
    up.add_argument(
        "--model-server-ports",
        type=flags.ports,
        default=str(DEFAULT_MODEL_SERVER_PORT),
        help="comma-separated ports, one embedded Sax model server each",
    )
    up.set_defaults(handler=_up, embedded=True)

    serve = commands.add_parser(
        "serve",
        help="start the gateway and Envoy in front of an existing Sax cell",
        description="Usage: saxgw serve --sax-root gs://BUCKET/sax-root",
    )
    _add_front(serve)
    serve.add_argument("--sax-root", required=True, help="SAX_ROOT of the cell (dir or gs://)")
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="listen on a non-loopback address although the config sets no authentication",
    )
    serve.set_defaults(handler=_up, embedded=False)

    gw = commands.add_parser("gateway", help="run one gateway gRPC server (no Envoy)")
    add_gateway_arguments(gw)
    gw.add_argument(
        "--event-loop",
        choices=tuning.EVENT_LOOPS,
        default="auto",
        help="auto: uvloop where installed, else asyncio's (asyncio: to compare or rule it out)",
    )
    gw.set_defaults(handler=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    config = _edge.load(args)
    if config is None:
        return 2
    settings = _edge.gateway_settings(settings_from_args(args), config)
    try:
        tuning.run(serve_gateway(settings), loop=args.event_loop)
    except (StorageSetupError, TableError) as exc:  # e.g. gs:// without credentials: no traceback
        print(f"saxgw gateway: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:  # as `saxgw up` reports a busy port: one line, status 1
        print(f"saxgw gateway: {cannot_listen(exc)}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    config = _edge.load(args)  # a bad file stops here, before anything starts
    if config is None:
        return 2
    if refusal := _edge.refuse_exposure(args, config.edge):
        print(f"saxgw: {refusal}", file=sys.stderr)
        return 2
    args.gateway_ports = _workers.gateway_ports(args)  # --workers resolved into ports
    if warning := _workers.oversubscribed(args):
        print(f"saxgw: {warning}", file=sys.stderr)
    problem = flags.port_clash(_ports_to_bind(args)) or flags.sax_root_problem(
        args.sax_root, must_exist=not args.embedded
    )
    if problem:
        print(f"saxgw: {problem}", file=sys.stderr)
        return 2
    args.fs_root = embedded_fs_root(args.sax_root, args.fs_root) if args.embedded else None
    if problem := _make_dirs(args):
        print(f"saxgw: {problem}", file=sys.stderr)
        return 1
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
    settings = StackSettings(
        gateway=_edge.gateway_settings(
            GatewaySettings(
                client=client_settings_from_args(args),
                default_timeout=args.default_timeout,
                config_file=args.config,
                telemetry=telemetry_from_args(args),
            ),
            config,
        ),
        cell=cell,
        gateway_ports=args.gateway_ports,
        envoy=_edge.envoy_settings(
            EnvoySettings(
                gateway_endpoints=(),
                listen_address=args.listen,
                listen_port=args.port,
                admin_port=args.envoy_admin_port,
                cors_origins=args.cors_origin,
                allowed_hosts=args.allowed_host,
                concurrency=_workers.envoy_concurrency(args),
            ),
            config.edge,
        ),
        log_dir=args.log_dir,
        restart=config.supervisor,
        ops_port=args.ops_port or None,
        ops_address=args.ops_listen,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        # Claimed before the check and held until exit: two `saxgw up` started at the same
        # moment both found the ports free, and both started a stack on them.
        with claim_ports(port for _, port, _ in _ports_to_bind(args)):
            if problem := _busy(args):
                print(f"saxgw: {problem}", file=sys.stderr)
                return 1
            with Stack(settings) as stack:
                return _serve_until_stopped(args, stack, stop)
    except PortClaimed as exc:  # by a `saxgw up|serve` that may not have bound it yet
        print(f"saxgw: {_in_use(args, exc.port, exc.holder)}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(
            f"saxgw: {exc}. Hint: see --log-dir for each process's log; --port and friends "
            "choose other ports.",
            file=sys.stderr,
        )
        return 1


def _busy(args: argparse.Namespace) -> str | None:
    """Why a port the stack needs cannot be bound: another process listens on it."""
    if busy := busy_ports(_ports_to_bind(args)):
        port, _ = busy[0]
        # Named, so that a process left over from an earlier run is found and stopped.
        return _in_use(args, port, holder(port) or "another process")
    return None


def _in_use(args: argparse.Namespace, port: int, who: str) -> str:
    role = next(role for _, number, role in _ports_to_bind(args) if number == port)
    return (
        f"port {port} is in use ({role}) by {who}; is another `saxgw up` running? "
        "Stop it, or choose other ports (see `saxgw up --help`)."
    )


def _make_dirs(args: argparse.Namespace) -> str | None:
    """Makes the local directories the flags name; why not, if one cannot be made."""
    dirs = [("--sax-root", args.sax_root), ("--fs-root", args.fs_root)] if args.embedded else []
    for flag, path in dirs:
        if path is not None and "://" not in path:
            try:
                make_dirs(Path(path))  # 0755, as upstream makes them
            except OSError as exc:
                return f"cannot create {flag} {path}: {exc.strerror}"
    if args.log_dir:
        try:
            Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create --log-dir {args.log_dir}: {exc.strerror}"
    return None


def _ports_to_bind(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    ports = [
        (args.listen, args.port, "Envoy's public port, --port"),
        ("127.0.0.1", args.envoy_admin_port, "Envoy's admin port, --envoy-admin-port"),
    ]
    if args.ops_port:
        ports.append((args.ops_listen, args.ops_port, "the ops (/metrics) port, --ops-port"))
    ports += [("127.0.0.1", p, "a gateway port, --gateway-ports") for p in args.gateway_ports]
    if args.embedded:
        ports.append(("127.0.0.1", args.admin_port, "the Sax admin port, --admin-port"))
        ports += [
            ("127.0.0.1", p, "a Sax model server port, --model-server-ports")
            for p in args.model_server_ports
        ]
    return ports


def _serve_until_stopped(args: argparse.Namespace, stack: Stack, stop: threading.Event) -> int:
    """Prints the banner once health passes (and when restored models are ready), restarts
    a child that exits or hangs; returns when ``stop`` is set."""
    supervisor = Supervisor(
        stack.group,
        stack.settings.restart,
        report=lambda line: print(line, file=sys.stderr, flush=True),
        probes=stack.probes(),
    )
    try:
        _supervise(args, stack, stop, supervisor)
    finally:
        supervisor.close()
    print("saxgw: stopping...", file=sys.stderr)
    return 0


def _supervise(
    args: argparse.Namespace, stack: Stack, stop: threading.Event, supervisor: Supervisor
) -> None:
    banner = restored = False
    waited = 0.0
    while not stop.is_set():
        supervisor.tick()  # a child that died or hung is restarted; the others keep serving
        # One /healthz a second until the banner: each is a line of Envoy's access log, and
        # a cell that is down must not flood it (polling every 50 ms wrote ~20 lines a second).
        if not banner and stack.wait_healthy(timeout=0):
            _print_banner(args, stack)
            banner = True
        elif not banner:
            waited += 1.0
            stop.wait(0.5)
            if waited == 60:
                print(
                    "saxgw: still waiting for the gateway to reach the Sax cell "
                    f"({stack.http_url}/healthz is 503); see the logs above",
                    file=sys.stderr,
                )
        if banner and not restored and args.embedded:
            restored = _report_restored(stack, args.cell)
        stop.wait(0.5)


def _report_restored(stack: Stack, cell: str) -> bool:
    """Prints once every model restored from an earlier run serves; False until then."""
    models = restored_models(stack.gateway_addresses[0], cell)
    if models is None or any(active < min(wanted, 1) for _, active, wanted in models):
        return False
    if models:
        names = ", ".join(f"{m} ({a}/{w})" for m, a, w in models)
        print(f"saxgw: restored models ready: {names}", flush=True)
    return True


def _print_banner(args: argparse.Namespace, stack: Stack) -> None:
    lines = [f"HTTP/JSON, gRPC, grpc-web  {stack.http_url}  (Envoy; /healthz)"]
    lines += [f"gateway gRPC               {a}" for a in stack.gateway_addresses]
    if stack.metrics_url:
        lines.append(f"Prometheus metrics         {stack.metrics_url}  (gateway + Envoy)")
    if args.otlp_endpoint:
        lines.append(f"traces (OTLP/gRPC)         {args.otlp_endpoint}")
    if args.embedded:
        admin = f"Sax admin ({args.cell})"
        lines.append(f"{admin:<27}127.0.0.1:{args.admin_port}")
        lines += [f"Sax model server           127.0.0.1:{p}" for p in args.model_server_ports]
    lines.append(f"SAX_ROOT                   {args.sax_root}")
    lines.append("Ready. Try:")
    if stack.envoy.edge.authenticated:  # else the two lines below are 401
        lines.append("  (with a key or JWT of --config: export SAXGW_API_KEY=...)")
        lines.append(
            f'  curl -s -H "Authorization: Bearer $SAXGW_API_KEY" {stack.http_url}/listcells'
        )
    else:
        lines.append(f"  curl -s {stack.http_url}/listcells")
    # `serve` has no --cell: its cells are whatever SAX_ROOT holds.
    where = f" {args.cell}" if args.embedded else ""
    lines.append(f"  .venv/bin/saxgw --gateway {stack.grpc_address} ls{where}")
    lines.append("  the walk-through in README.md; the API reference in docs/api.md")
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)
