"""The flags of one gateway process (``saxgw gateway``) <-> ``GatewaySettings``, in one place:
the CLI parses them, launchers build them from settings, and both agree by construction.

    argv = gateway_argv(settings)            # [python, -m, gateway.cli, gateway, --sax-root=...]
    settings = settings_from_args(parser.parse_args(argv[4:]))   # the same settings back
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from gateway.client import ClientSettings
from gateway.common.flags import (
    add_sax_root_argument,
    endpoint,
    optional_port,
    seconds,
    seconds_or_zero,
)
from gateway.common.interpreter import module_argv
from gateway.common.stacktoken import STACK_TOKEN_VARIABLE
from gateway.config import (
    DEFAULT_GATEWAY_PORT,
    DEFAULT_STREAM_KEEPALIVE,
    GatewaySettings,
    SharedSlots,
)
from gateway.service.telemetry_args import (
    add_telemetry_arguments,
    telemetry_argv,
    telemetry_from_args,
)


def default(cls: type[Any], name: str) -> Any:
    """The default of a settings field, so that a flag's default is the field's."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``saxgw gateway``."""
    add_sax_root_argument(parser)
    parser.add_argument(
        "--gcs-endpoint", type=endpoint, help="GCS API endpoint override (a storage emulator)"
    )
    parser.add_argument("--host", default=default(GatewaySettings, "host"))
    parser.add_argument("--port", type=optional_port, default=DEFAULT_GATEWAY_PORT)
    add_deadline_arguments(parser)
    add_stream_arguments(parser)
    add_config_argument(parser)
    parser.add_argument(
        "--config-snapshot",
        metavar="FILE",
        help=argparse.SUPPRESS,  # `saxgw up|serve` passes the --config it read at start
    )
    parser.add_argument(
        "--shared-slots",
        metavar="FILE",
        help="the table in which the gateway processes of one stack count per-client calls "
        "and streams together (`saxgw up` makes it); without it, each counts alone",
    )
    parser.add_argument(
        "--worker",
        type=int,
        default=0,
        metavar="INDEX",
        help="this process's column of --shared-slots (0, 1, ...: one per gateway process)",
    )
    parser.add_argument(
        "--shared-slots-fd",
        type=int,
        metavar="FD",
        help=argparse.SUPPRESS,  # `saxgw up|serve` hands the table over, open
    )
    parser.add_argument(
        "--metrics-dir", help="directory shared with the other gateway processes and `saxgw ops`"
    )
    add_telemetry_arguments(parser)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config``, the one registration: ``gateway``, ``up``, ``serve`` and ``envoy-config``.
    The CLI reads the file (gateway.configfile) and applies it to the settings."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file: API keys, JWT issuers, roles, quotas, TLS, limits (docs/config.md); "
        "models: aliases, chat templates, tokenizers (docs/openai.md)",
    )


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """How long calls in flight may take to end at shutdown (``--grace-period``), how many
    streams a client may hold open (``--max-streams-per-client``) and how long a stream may
    send nothing (``--stream-keepalive``): shared by ``gateway``,
    ``up`` and ``serve``, which pass them on to each gateway process."""
    parser.add_argument(
        "--grace-period",
        type=seconds_or_zero,
        default=default(GatewaySettings, "grace_period"),
        help="seconds in-flight calls (a long stream too) may take to end at shutdown; those "
        "still running a second before its end (half of it, if shorter than 2 s) then fail "
        "UNAVAILABLE, which a stream reports as its last message",
    )
    parser.add_argument(
        "--max-streams-per-client",
        type=int,
        default=default(GatewaySettings, "max_streams_per_client"),
        help="open streams and waits (GenerateStream, WatchAddresses, OpenAI stream=true, "
        "WaitForReady, grpc.health.v1 Watch) one client may hold: its authenticated identity, "
        "else its address",
    )
    parser.add_argument(
        "--stream-keepalive",
        type=seconds_or_zero,
        metavar="SECONDS",
        help="an OpenAI stream that has sent nothing this long sends an SSE comment (again each "
        "time as long passes), a /generate_stream still waiting for its first token its "
        "headers, so clients and proxies with shorter read timeouts keep waiting; later errors "
        "come in-band. 0: never "
        "(default: the --config file's limits.stream_keepalive, else "
        f"{DEFAULT_STREAM_KEEPALIVE:g})",
    )


def add_deadline_arguments(parser: argparse.ArgumentParser) -> None:
    """How long calls may take (``--default-timeout``, ``--admin-unreachable-after``,
    ``--overloaded-after``): shared by ``gateway``, ``up`` and ``serve``."""
    parser.add_argument(
        "--default-timeout",
        type=seconds,
        default=default(GatewaySettings, "default_timeout"),
        help="deadline (s) of calls that set none, and the longest a unary call's own "
        "grpc-timeout or timeout may set (a longer one ends here)",
    )
    parser.add_argument(
        "--admin-unreachable-after",
        type=seconds,
        default=default(ClientSettings, "admin_unreachable_after"),
        metavar="SECONDS",
        help="an unreachable Sax admin fails calls with UNAVAILABLE (503) after this long",
    )
    parser.add_argument(
        "--overloaded-after",
        type=seconds_or_zero,
        default=default(ClientSettings, "overloaded_after"),
        metavar="SECONDS",
        help="a model whose replicas answer RESOURCE_EXHAUSTED (overloaded) is retried for this "
        "long, then fails calls with RESOURCE_EXHAUSTED (429, Retry-After) (0: each replica once)",
    )


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """The settings the flags describe; what the ``--config`` file holds is applied by the CLI
    (gateway/cli/_edge.py: gateway_settings), which reads it."""
    return GatewaySettings(
        client=client_settings_from_args(args),
        host=args.host,
        port=args.port,
        default_timeout=args.default_timeout,
        grace_period=args.grace_period,
        max_streams_per_client=args.max_streams_per_client,
        # Not given: the default, which the config file's may replace (gateway/cli/_edge.py).
        stream_keepalive=(
            DEFAULT_STREAM_KEEPALIVE if args.stream_keepalive is None else args.stream_keepalive
        ),
        shared_slots=(
            SharedSlots(path=args.shared_slots, worker=args.worker, inherited=args.shared_slots_fd)
            if args.shared_slots
            else None
        ),
        telemetry=telemetry_from_args(args),
        config_file=args.config,
        config_snapshot=args.config_snapshot,
        # Not a flag: a command line is on every `ps` (gateway/common/stacktoken.py).
        stack_token=os.environ.get(STACK_TOKEN_VARIABLE) or None,
    )


def client_settings_from_args(args: argparse.Namespace) -> ClientSettings:
    """The Sax client's settings from ``--sax-root``, ``--gcs-endpoint``,
    ``--admin-unreachable-after`` and ``--overloaded-after``: of ``gateway``, and of ``up`` and
    ``serve`` too."""
    return ClientSettings(
        sax_root=args.sax_root,
        gcs_endpoint=args.gcs_endpoint,
        admin_unreachable_after=args.admin_unreachable_after,
        overloaded_after=args.overloaded_after,
    )


def gateway_argv(settings: GatewaySettings) -> list[str]:
    """The command that runs one gateway process with ``settings`` (flags as parsed above)."""
    argv = [*module_argv("gateway.cli"), "gateway", f"--sax-root={settings.sax_root}"]
    if settings.client.gcs_endpoint:
        argv.append(f"--gcs-endpoint={settings.client.gcs_endpoint}")
    return [
        *argv,
        f"--host={settings.host}",
        f"--port={settings.port}",
        f"--default-timeout={settings.default_timeout!r}",
        f"--grace-period={settings.grace_period!r}",
        f"--max-streams-per-client={settings.max_streams_per_client}",
        f"--stream-keepalive={settings.stream_keepalive!r}",
        f"--admin-unreachable-after={settings.client.admin_unreachable_after!r}",
        f"--overloaded-after={settings.client.overloaded_after!r}",
        *([f"--config={settings.config_file}"] if settings.config_file else []),
        *([f"--config-snapshot={settings.config_snapshot}"] if settings.config_snapshot else []),
        *_shared_slots_argv(settings.shared_slots),
        *telemetry_argv(settings.telemetry),
    ]


def _shared_slots_argv(shared: SharedSlots | None) -> list[str]:
    if shared is None:
        return []
    argv = [f"--shared-slots={shared.path}", f"--worker={shared.worker}"]
    if shared.inherited is not None:
        argv.append(f"--shared-slots-fd={shared.inherited}")
    return argv
