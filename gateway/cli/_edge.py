"""``--config FILE`` for the commands that run things: load once at the edge, pass it down."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from pathlib import Path

from gateway.edge import ConfigError, EdgeConfig, access_settings, load_config
from gateway.launch.envoy import EnvoySettings

__all__ = [
    "access_settings",
    "add_config_flag",
    "envoy_settings",
    "load",
    "refuse_exposure",
    "write_private",
]


def add_config_flag(cmd: argparse.ArgumentParser) -> None:
    """Adds ``--config``."""
    cmd.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file: API keys, JWT issuers, roles, quotas, TLS, limits (docs/config.md)",
    )


def load(args: argparse.Namespace) -> EdgeConfig | None:
    """The config named by ``--config`` (defaults without one); None after printing why not."""
    if not args.config:
        return EdgeConfig()
    try:
        return load_config(Path(args.config))
    except ConfigError as exc:
        print(f"saxgw: bad config: {exc}", file=sys.stderr)
        return None


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def refuse_exposure(args: argparse.Namespace, config: EdgeConfig) -> str | None:
    """Why ``serve`` must not start: a non-loopback listener with nobody to authenticate."""
    if _loopback(args.listen) or config.authenticated or getattr(args, "allow_anonymous", True):
        return None
    return (
        f"refusing to listen on {args.listen} without authentication: anyone who reaches it "
        "could publish and unpublish models. Add auth.api_keys or auth.jwt to --config, "
        "or pass --allow-anonymous."
    )


def envoy_settings(base: EnvoySettings, config: EdgeConfig) -> EnvoySettings:
    """``base`` (from flags) with the file's limits, origins and edge rules."""
    return dataclasses.replace(
        base,
        cors_origins=(*base.cors_origins, *config.cors_origins),
        max_connections=config.limits.max_connections,
        max_request_bytes=config.limits.max_request_bytes,
        edge=config,
    )


def write_private(path: Path, text: str) -> None:
    """Writes a file only its owner can read: Envoy's config holds the API keys."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)
