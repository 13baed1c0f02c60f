"""Commands that run things: ``up`` (everything), ``serve`` (in front of a real cell) and
``gateway`` (one gateway process, as ``up`` and ``serve`` start it)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from gateway.cell.settings import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_CELL,
    DEFAULT_MODEL_SERVER_PORT,
    CellSettings,
)
from gateway.cli import _edge, _preflight, _running, _workers
from gateway.cli._listen import cannot_listen
from gateway.common import flags, logs
from gateway.common.listen import ListenError
from gateway.common.slottable import TableError
from gateway.common.storage import StorageSetupError
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings
from gateway.launch import tuning
from gateway.launch.envoy import EnvoySettings, route_timeout_over
from gateway.launch.logdir import LogDirInUse, hold_log_dir
from gateway.launch.ports import PortClaimed, claim_ports
from gateway.launch.processes import LogError, StartupError
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.stackdir import NoRoom
from gateway.service import serve as serve_gateway
from gateway.service.args import (
    add_config_argument,
    add_deadline_arguments,
    add_gateway_arguments,
    add_stream_arguments,
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
        help="address Envoy listens on (0.0.0.0: every IPv4 address; ::, every address of both "
        "families)",
    )
    cmd.add_argument(
        "--drain-delay",
        type=flags.seconds_or_zero,
        default=default(StackSettings, "drain_delay"),
        metavar="SECONDS",
        help="off loopback, at a stop: seconds the gateways go on serving once /healthz is "
        "503, so that a load balancer sends new connections elsewhere and clients' "
        "connections close after a reply, not with a 503",
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
    add_stream_arguments(cmd)
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
        description="Usage: saxgw serve --sax-root gs://BUCKET/sax-root (or with SAX_ROOT set)",
    )
    _add_front(serve)
    flags.add_sax_root_argument(serve)
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
    if args.shared_slots:  # one of a stack's gateway processes, which share saxgw's stderr
        logs.name_process(f"gateway-{args.worker}")
    config = _edge.load(args)
    if config is None:
        return 2
    # As `up` and `serve` check it; a root not there yet is no error (a volume may be mounted
    # later: the gateway is NOT_SERVING until a cell appears).
    if problem := flags.sax_root_problem(args.sax_root, must_exist=False):
        print(f"saxgw gateway: {problem}", file=sys.stderr)
        return 2
    keepalive = args.stream_keepalive
    settings = _edge.gateway_settings(settings_from_args(args), config, stream_keepalive=keepalive)
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
    problem = (
        _preflight.undecodable_path(args)
        or flags.port_clash(_preflight.ports_to_bind(args))
        or flags.sax_root_problem(args.sax_root, must_exist=not args.embedded)
    )
    if problem:
        print(f"saxgw: {problem}", file=sys.stderr)
        return 2
    if problem := _preflight.no_envoy(args) or _preflight.too_few_files():
        print(f"saxgw: {problem}", file=sys.stderr)
        return 1
    args.fs_root = embedded_fs_root(args.sax_root, args.fs_root) if args.embedded else None
    if problem := _preflight.make_state_dirs(args):
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
        config=config,  # every gateway process, restarted ones too, runs with this reading
        gateway=_edge.gateway_settings(
            GatewaySettings(
                client=client_settings_from_args(args),
                default_timeout=args.default_timeout,
                grace_period=args.grace_period,
                max_streams_per_client=args.max_streams_per_client,
                config_file=args.config,
                telemetry=telemetry_from_args(args),
            ),
            config,
            stream_keepalive=args.stream_keepalive,
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
                route_timeout=route_timeout_over(args.default_timeout),
            ),
            config.edge,
        ),
        log_dir=args.log_dir,
        restart=config.supervisor,
        ops_port=args.ops_port or None,
        ops_address=args.ops_listen,
        drain_delay=args.drain_delay,
    )
    stop = _running.StopSignals()  # Ctrl-C, SIGTERM, SIGHUP: a graceful stop
    try:
        # Claimed before the check and held until exit: two `saxgw up` started at the same
        # moment both found the ports free, and both started a stack on them.
        with (
            claim_ports(port for _, port, _ in _preflight.ports_to_bind(args)),
            hold_log_dir(args.log_dir) if args.log_dir else contextlib.nullcontext(),
        ):
            if problem := _preflight.busy(args):
                print(f"saxgw: {problem}", file=sys.stderr)
                return 1
            with Stack(settings, stopping=stop.event, hurry=stop.hurry) as stack:
                status = _running.serve_until_stopped(args, stack, stop)
            return stop.status(status)
    except PortClaimed as exc:  # by a `saxgw up|serve` that may not have bound it yet
        print(f"saxgw: {_preflight.claimed(args, exc)}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(_startup_failure(exc, args.log_dir), file=sys.stderr)
        return 1
    except LogDirInUse as exc:
        print(
            f"saxgw: --log-dir {args.log_dir} is in use by {exc.holder}, another saxgw's stack; "
            "give each stack a --log-dir of its own",
            file=sys.stderr,
        )
        return 1
    except LogError as exc:
        print(f"saxgw: {exc}; give a --log-dir it can write in", file=sys.stderr)
        return 1
    except NoRoom as exc:
        print(f"saxgw: {exc}", file=sys.stderr)
        return 1


#: How much of a failed child's log `saxgw up|serve` repeats: its cause is in the last lines.
_LOG_TAIL_LINES = 5
_LOG_LINE_CHARS = 300


def _startup_failure(exc: StartupError, log_dir: str | None) -> str:
    """What `saxgw up|serve` says when a child did not start: the child's last log lines,
    where its own reason is (a busy port, another admin of the cell, a bad SAX_ROOT), and
    where the whole log is. It used to add "--port and friends choose other ports" whatever
    the reason, which misled when the cause was not a port."""
    if not log_dir:
        where = "its log is in the output above (without --log-dir, every process logs to stderr)"
        return f"saxgw: {exc}. Hint: {where}."
    log = Path(log_dir) / f"{exc.name}.log"
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    tail = [f"  {line[:_LOG_LINE_CHARS]}" for line in lines[-_LOG_TAIL_LINES:]]
    ending = "its last lines:\n" + "\n".join(tail) + "\n" if tail else ""
    return f"saxgw: {exc}; {ending}Hint: the whole log is {log}."
