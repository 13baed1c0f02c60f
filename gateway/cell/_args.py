"""Command-line flags <-> CellSettings, shared by every entry point so that the launcher can
hand its settings to the admin and model server processes it starts."""

from __future__ import annotations

import argparse
import logging

from gateway.cell.settings import DEFAULT_CELL, CellSettings
from gateway.common import flags, logs
from gateway.common.interpreter import module_argv

_TIMING = (
    ("--poll-interval", "poll_interval", "seconds between the admin's polls of model servers"),
    ("--server-dead-after", "server_dead_after", "seconds after which a silent server is dropped"),
    ("--rejoin-interval", "rejoin_interval", "seconds between a model server's periodic joins"),
    (
        "--location-watch-interval",
        "location_watch_interval",
        "seconds between location.proto reads",
    ),
    ("--rpc-timeout", "rpc_timeout", "deadline of admin <-> model server calls, in seconds"),
    (
        "--max-restart-backoff",
        "max_restart_backoff",
        "longest wait before restarting a server that keeps exiting, in seconds",
    ),
)


def add_cell_arguments(parser: argparse.ArgumentParser, *, sax_root_required: bool) -> None:
    """Adds the flags every entry point shares."""
    parser.add_argument(
        "--sax-root",
        required=sax_root_required,
        help="SAX_ROOT: where cells publish config.proto and location.proto (dir or gs://)",
    )
    parser.add_argument("--fs-root", help="where the admin saves state (default: SAX_ROOT/fsroot)")
    parser.add_argument(
        "--cell", type=flags.cell_id, default=DEFAULT_CELL, help="the cell, /sax/<name>"
    )
    parser.add_argument(
        "--gcs-endpoint", type=flags.endpoint, help="GCS emulator endpoint for gs:// roots"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on and advertise")
    for flag, field, text in _TIMING:
        parser.add_argument(flag, type=flags.seconds, dest=field, help=text)
    parser.add_argument(
        "--max-models-per-server", type=int, help="models that may share one model server"
    )
    parser.add_argument(
        "--adopt-wait",
        type=flags.seconds_or_zero,
        help="seconds restored models wait for their old servers (default: --server-dead-after)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-weight models")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="json lines, or text (auto: text on a terminal, else json); saxgw up passes its own",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="also stop when stdin closes (launchers pass a pipe so children die with them)",
    )


def settings_from_args(args: argparse.Namespace, *, sax_root: str) -> CellSettings:
    timing = {
        field: getattr(args, field) for _, field, _ in _TIMING if getattr(args, field) is not None
    }
    base = CellSettings(sax_root=sax_root)
    return CellSettings(
        sax_root=sax_root,
        cell=args.cell,
        fs_root=args.fs_root,
        gcs_endpoint=args.gcs_endpoint,
        host=args.host,
        seed=args.seed,
        max_models_per_server=args.max_models_per_server or base.max_models_per_server,
        poll_interval=timing.get("poll_interval", base.poll_interval),
        server_dead_after=timing.get("server_dead_after", base.server_dead_after),
        rejoin_interval=timing.get("rejoin_interval", base.rejoin_interval),
        location_watch_interval=timing.get("location_watch_interval", base.location_watch_interval),
        rpc_timeout=timing.get("rpc_timeout", base.rpc_timeout),
        max_restart_backoff=timing.get("max_restart_backoff", base.max_restart_backoff),
        adopt_wait=getattr(args, "adopt_wait", None),
    )


def settings_to_argv(settings: CellSettings) -> list[str]:
    """Flags that make settings_from_args rebuild these settings (ports excepted)."""
    argv = [
        f"--sax-root={settings.sax_root}",
        f"--cell={settings.cell}",
        f"--host={settings.host}",
        f"--seed={settings.seed}",
        f"--max-models-per-server={settings.max_models_per_server}",
    ]
    if settings.fs_root:
        argv.append(f"--fs-root={settings.fs_root}")
    if settings.gcs_endpoint:
        argv.append(f"--gcs-endpoint={settings.gcs_endpoint}")
    if settings.adopt_wait is not None:
        argv.append(f"--adopt-wait={settings.adopt_wait!r}")
    argv += [f"{flag}={getattr(settings, field)!r}" for flag, field, _ in _TIMING]
    return argv


def cell_argv(settings: CellSettings, *, log_format: logs.LogFormat = "text") -> list[str]:
    """The command that runs a whole cell (``python -m gateway.cell``) with ``settings``."""
    argv = [*module_argv("gateway.cell"), *settings_to_argv(settings)]
    argv += [
        f"--admin-port={settings.admin_port}",
        f"--model-servers={settings.num_model_servers}",
        f"--log-format={log_format}",
    ]
    if settings.model_server_ports:
        argv.append(f"--model-server-ports={','.join(map(str, settings.model_server_ports))}")
    return argv


def configure_logging(level: str, *, name: str, fmt: logs.LogFormat = "text") -> None:
    """Text lines named after the process (``admin``, ``modelserver``), or the gateway's JSON
    lines: under ``saxgw up --log-format json`` the cell's lines went to the same stderr (or
    log directory) as text, which a JSON log pipeline cannot read."""
    if logs.resolved(fmt) == "json":
        logs.configure("json", logging.getLevelName(level))
        return
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname).1s {name} %(name)s: %(message)s",
    )
    # As in JSON: a model server's replies to a stream whose caller stopped reading and left
    # logged grpc's ERROR and traceback, one per stalled client that went away.
    logs.filter_grpc()
