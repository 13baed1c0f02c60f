"""``--config FILE`` for the commands that run things: read once at the edge (the one loader is
`gateway.configfile`), applied to each process's settings, passed down."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from gateway.common.limits import GRPC_MAX_MESSAGE_BYTES, KIB
from gateway.common.private import write_private
from gateway.config import ConfigError, GatewaySettings
from gateway.configfile import ConfigFile, load_config, read_snapshot
from gateway.edge import EdgeConfig, access_settings, allowed_host, allowed_origin, is_loopback
from gateway.launch.envoy import EnvoySettings

__all__ = [
    "allowed_host_flag",
    "allowed_origin_flag",
    "envoy_settings",
    "gateway_settings",
    "load",
    "refuse_exposure",
    "write_private",
]

#: The most bytes of gRPC message one byte of JSON body transcodes to (`gateway_settings`),
#: rounded up.
TRANSCODED_BYTES_PER_BODY_BYTE = 6


def load(args: argparse.Namespace) -> ConfigFile | None:
    """The file named by ``--config`` (defaults without one); None after printing why not.
    A gateway process of `saxgw up|serve` reads the snapshot the stack took at start
    (``--config-snapshot``), never the file, which may have changed since."""
    try:
        if snapshot := getattr(args, "config_snapshot", None):
            return read_snapshot(snapshot)
        if args.config is None:
            return ConfigFile()
        if not args.config:
            # `--config "$SAXGW_CONFIG"` with the variable unset ran the stack with no
            # config at all: no keys, open to every caller.
            raise ConfigError("--config names no file (an unset variable?); leave it out for none")
        return load_config(Path(args.config))
    except ConfigError as exc:
        print(f"saxgw: bad config: {exc}", file=sys.stderr)
        return None


def gateway_settings(
    base: GatewaySettings, config: ConfigFile, *, stream_keepalive: float | None = None
) -> GatewaySettings:
    """``base`` (from flags) with what the file decides for a gateway process: its models,
    who may call what, messages and headers as large as Envoy lets through
    (``limits.max_request_bytes`` when above the default, ``limits.max_request_headers_kb``),
    messages received no larger than a body within ``limits.max_request_bytes`` transcodes
    to (so also when compressed), deadlines no longer than ``limits.max_stream_duration``,
    and ``limits.stream_keepalive`` unless the ``--stream-keepalive`` flag gave
    ``stream_keepalive``. The gateway then ends a call at the limit itself, with
    DEADLINE_EXCEEDED as a JSON error (an in-band error event once a stream has begun),
    before Envoy's backstop resets it."""
    limits = config.edge.limits
    limit = limits.max_stream_duration

    def capped(seconds: float) -> float:
        return min(seconds, limit) if limit > 0 else seconds  # 0: unbounded

    return dataclasses.replace(
        base,
        models=config.models,
        access=access_settings(config.edge),
        max_message_bytes=max(base.max_message_bytes, limits.max_request_bytes),
        # What Envoy lets through, once transcoded: a JSON body of N bytes is a message of at
        # most 5.5 N (a list of one-digit numbers in extra_inputs: 2 bytes each in JSON, an
        # 11-byte google.protobuf.Value in the message). A lower limit than the default is
        # the gateway's too, else a gRPC caller's compressed message inflated past it: 32 KB
        # of gzip was a 32 MB message under a 64 KiB limit.
        # And never less than Envoy's transcoder passes (the body with its framing): past
        # it, gRPC refused with RESOURCE_EXHAUSTED, a 429 that clients retry.
        # gRPC takes a C int: the largest body limit allowed (2147483647) with its framing
        # overflowed it, and every gateway exited at start (OverflowError).
        max_receive_bytes=min(
            max(base.max_receive_bytes, limits.max_request_message_bytes),
            TRANSCODED_BYTES_PER_BODY_BYTE * limits.max_request_bytes
            + limits.message_framing_bytes,
            GRPC_MAX_MESSAGE_BYTES,
        ),
        # gRPC counts 32 bytes per header beyond its name and value, and Envoy adds headers of
        # its own (x-forwarded-for, x-envoy-original-path, traceparent...): twice the limit.
        max_metadata_bytes=max(base.max_metadata_bytes, 2 * limits.max_request_headers_kb * KIB),
        default_timeout=capped(base.default_timeout),
        stream_timeout=capped(base.stream_timeout),
        max_watch_duration=limit,
        stream_keepalive=limits.stream_keepalive if stream_keepalive is None else stream_keepalive,
    )


def allowed_host_flag(text: str) -> str:
    """``--allowed-host``: a name a loopback listener also answers (gateway/edge/_hosts.py)."""
    try:
        return allowed_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; got {text!r}") from None


def allowed_origin_flag(text: str) -> str:
    """``--cors-origin``: a browser origin, as browsers send it (gateway/edge/_origins.py)."""
    try:
        return allowed_origin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; got {text!r}") from None


def refuse_exposure(args: argparse.Namespace, config: EdgeConfig) -> str | None:
    """Why ``serve`` must not start: a non-loopback listener with nobody to authenticate."""
    if is_loopback(args.listen) or config.authenticated or getattr(args, "allow_anonymous", True):
        return None
    return (
        f"refusing to listen on {args.listen} without authentication: anyone who reaches it "
        "could publish and unpublish models. Add auth.api_keys, auth.jwt or "
        "tls.certificate_clients to --config, or pass --allow-anonymous."
    )


def envoy_settings(base: EnvoySettings, config: EdgeConfig) -> EnvoySettings:
    """``base`` (from flags) with the file's origins, host names, edge rules and limits."""
    return dataclasses.replace(
        base,
        cors_origins=(*base.cors_origins, *config.cors_origins),
        allowed_hosts=(*base.allowed_hosts, *config.allowed_hosts),
        edge=config,
    )
