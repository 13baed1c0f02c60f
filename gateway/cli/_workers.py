"""``--workers`` and ``--envoy-concurrency`` of ``saxgw up|serve``: how many gateway processes
run behind Envoy, and how many worker threads Envoy runs (gateway/launch/tuning.py).

    saxgw up --workers auto          # one gateway per core Envoy does not need
    saxgw up --workers 2             # gateways on 50051 and 50052 (--gateway-ports' first + i)
"""

from __future__ import annotations

import argparse

from gateway.launch.tuning import parse_workers, plan_cores, usable_cores


def _workers(text: str) -> str | int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    """Adds ``--workers`` and ``--envoy-concurrency``."""
    cmd.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="gateway processes behind Envoy, on consecutive ports from the first of "
        "--gateway-ports (auto: one per core Envoy does not need); default: one per "
        "--gateway-ports port",
    )
    cmd.add_argument(
        "--envoy-concurrency",
        type=_workers,  # the same grammar: a positive count or auto
        default="auto",
        metavar="N|auto",
        help="Envoy's worker threads (auto: a third of the cores this process may use, "
        "at least one)",
    )


def gateway_ports(args: argparse.Namespace, cores: int | None = None) -> list[int]:
    """The gateway ports ``--workers`` and ``--gateway-ports`` ask for together."""
    ports: list[int] = list(args.gateway_ports)
    if args.workers is None:
        return ports
    count = plan_cores(args.workers, cores or usable_cores()).workers
    if len(ports) > 1 and len(ports) != count:
        raise SystemExit(
            f"saxgw: --gateway-ports names {len(ports)} ports but --workers asks for {count}; "
            "give one port (the first) or as many as workers"
        )
    if len(ports) == count:
        return ports
    if ports[0] + count - 1 > 65535:
        raise SystemExit(
            f"saxgw: --workers {count} from --gateway-ports {ports[0]} runs past port 65535; "
            "give a lower first port"
        )
    return [ports[0] + i for i in range(count)]


def oversubscribed(args: argparse.Namespace, cores: int | None = None) -> str | None:
    """A warning when ``--workers`` asks for more gateway processes than this process may use
    cores: each is busy on its own when loaded, so the extra ones only take turns (on 2
    cores, 2 processes served fewer requests than 1: BENCHMARKS.md, "Scale-out")."""
    cores = cores or usable_cores()
    if args.workers is None or args.workers == "auto" or int(args.workers) <= cores:
        return None
    return (
        f"warning: --workers {args.workers} on {cores} usable cores: processes beyond the cores "
        "take turns on them and add memory, not throughput (--workers auto fits them)"
    )


def envoy_concurrency(args: argparse.Namespace, cores: int | None = None) -> int:
    """Envoy's ``--concurrency``."""
    if args.envoy_concurrency == "auto":
        return plan_cores(1, cores or usable_cores()).envoy
    return int(args.envoy_concurrency)
