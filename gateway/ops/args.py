"""The flags of the ops process (``saxgw ops``) <-> ``OpsSettings``, in one place, as for the
gateway (`gateway.service.args`): the CLI parses them, the launcher builds them from settings.
"""

from __future__ import annotations

import argparse

from gateway.common.flags import host_port, optional_port
from gateway.common.interpreter import module_argv
from gateway.common.logs import FORMATS
from gateway.ops._server import OpsSettings

_DEFAULTS = OpsSettings()


def add_ops_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``saxgw ops``."""
    parser.add_argument("--host", default=_DEFAULTS.host, help="address to listen on")
    parser.add_argument(
        "--port",
        type=optional_port,
        default=_DEFAULTS.port,
        help="port to listen on (0: a free one)",
    )
    parser.add_argument(
        "--metrics-dir", metavar="DIR", help="the gateway processes' shared metrics directory"
    )
    parser.add_argument(
        "--envoy-admin",
        type=host_port,
        metavar="HOST:PORT",
        help="Envoy's admin interface, whose stats are added",
    )
    parser.add_argument("--log-format", choices=FORMATS, default="auto")


def settings_from_args(args: argparse.Namespace) -> OpsSettings:
    """The settings the flags describe."""
    return OpsSettings(
        host=args.host, port=args.port, metrics_dir=args.metrics_dir, envoy_admin=args.envoy_admin
    )


def ops_argv(settings: OpsSettings, log_format: str) -> list[str]:
    """The command that runs the ops process with ``settings``."""
    argv = [*module_argv("gateway.cli"), "ops", f"--host={settings.host}"]
    argv += [f"--port={settings.port}", f"--log-format={log_format}"]
    if settings.envoy_admin:
        argv.append(f"--envoy-admin={settings.envoy_admin}")
    if settings.metrics_dir:
        argv.append(f"--metrics-dir={settings.metrics_dir}")
    return argv
