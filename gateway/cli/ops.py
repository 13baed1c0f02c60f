"""``saxgw ops``: the ops server alone (``up`` and ``serve`` start it for you)."""

from __future__ import annotations

import argparse
import sys
from functools import partial

from gateway.cli._listen import cannot_listen
from gateway.common.listen import ListenError
from gateway.ops.args import add_ops_arguments, settings_from_args


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``ops``."""
    ops = commands.add_parser(
        "ops",
        help="serve /metrics for gateway processes and Envoy (one scrape URL)",
        description=(
            "Serves /metrics on --port: the gateway processes' metrics from --metrics-dir and "
            "Envoy's stats from --envoy-admin, in one scrape. Give one of the two, or both, as "
            "`saxgw up` does: saxgw ops --metrics-dir DIR --envoy-admin 127.0.0.1:9901"
        ),
    )
    add_ops_arguments(ops)
    ops.set_defaults(handler=partial(_ops, ops))


def _ops(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from gateway.ops import serve

    if not (args.metrics_dir or args.envoy_admin):  # /metrics would be an empty 200
        parser.error("give --metrics-dir, --envoy-admin or both: with neither, /metrics is empty")
    try:
        serve(settings_from_args(args))
    except ListenError as exc:  # as `saxgw up` reports a busy port: one line, status 1
        print(f"saxgw ops: {cannot_listen(exc)}", file=sys.stderr)
        return 1
    return 0
