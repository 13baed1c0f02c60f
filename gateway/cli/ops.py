"""``saxgw ops``: the ops server alone (``up`` and ``serve`` start it for you)."""

from __future__ import annotations

import argparse
import sys

from gateway.cli._listen import cannot_listen
from gateway.common.listen import ListenError
from gateway.ops.args import add_ops_arguments, settings_from_args


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``ops``."""
    ops = commands.add_parser(
        "ops",
        help="serve /metrics for gateway processes and Envoy (one scrape URL)",
        description="Usage: saxgw ops --metrics-dir DIR --envoy-admin 127.0.0.1:9901",
    )
    add_ops_arguments(ops)
    ops.set_defaults(handler=_ops)


def _ops(args: argparse.Namespace) -> int:
    from gateway.ops import serve

    try:
        serve(settings_from_args(args))
    except ListenError as exc:  # as `saxgw up` reports a busy port: one line, status 1
        print(f"saxgw ops: {cannot_listen(exc)}", file=sys.stderr)
        return 1
    return 0
