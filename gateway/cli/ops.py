"""``saxgw ops``: the ops server alone (``up`` and ``serve`` start it for you)."""

from __future__ import annotations

import argparse

from gateway.common.logs import FORMATS


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``ops``."""
    ops = commands.add_parser(
        "ops",
        help="serve /metrics for gateway processes and Envoy (one scrape URL)",
        description="Usage: saxgw ops --metrics-dir DIR --envoy-admin 127.0.0.1:9901",
    )
    ops.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ops.add_argument("--port", type=int, default=8889)
    ops.add_argument("--metrics-dir", help="the gateway processes' shared metrics directory")
    ops.add_argument("--envoy-admin", help="host:port of Envoy's admin interface")
    ops.add_argument("--log-format", choices=FORMATS, default="auto")
    ops.set_defaults(handler=_ops)


def _ops(args: argparse.Namespace) -> int:
    from gateway.ops import OpsSettings, serve  # prometheus_client: only this command needs it

    serve(
        OpsSettings(
            host=args.host,
            port=args.port,
            metrics_dir=args.metrics_dir,
            envoy_admin=args.envoy_admin,
        )
    )
    return 0
