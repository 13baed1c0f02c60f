"""The product's direct mode (``direct: {generate: true}``, gateway/launch/direct/) as the
bench runs it: Envoy rendered by `gateway.launch.envoy.render` with API keys and a client model
list (`bench._full_envoy`'s keys, without its ``quotas.models`` entry, which would keep the
bench's model on the gateways), and the control plane's files in ``--workdir``. The bench
stack starts the control plane itself (``python -m gateway.launch.direct``) once this Envoy
listens, with the config snapshot written here.

    python -m bench._product_direct --port P --admin-port A --gateway HOST:PORT --workdir D
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench._direct_envoy import exec_envoy
from bench._full_envoy import DEFAULT_DEADLINE_S, EDGE
from gateway.configfile import ConfigFile, write_snapshot
from gateway.edge import parse_edge
from gateway.launch.envoy import EnvoySettings, render, route_timeout_over

PRODUCT_EDGE: dict[str, Any] = {
    **{k: v for k, v in EDGE.items() if k != "quotas"},
    "direct": {"generate": True},
}


def snapshot(workdir: Path) -> Path:
    """The config snapshot the control plane reads."""
    return workdir / "config.snapshot"


def directory(workdir: Path) -> Path:
    """The control plane's files (Envoy's RDS and CDS)."""
    return workdir / "direct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--model-server", help="unused: the control plane finds the replicas")
    parser.add_argument("--gateway", required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    directory(args.workdir).mkdir(parents=True, exist_ok=True)
    edge = parse_edge(PRODUCT_EDGE)
    write_snapshot(ConfigFile(edge=edge), snapshot(args.workdir))
    settings = EnvoySettings(
        gateway_endpoints=(args.gateway,),
        listen_port=args.port,
        admin_port=args.admin_port,
        route_timeout=route_timeout_over(DEFAULT_DEADLINE_S),
        edge=edge,
        concurrency=args.concurrency,
        direct_dir=str(directory(args.workdir)),
    )
    path = args.workdir / "product-direct-envoy.yaml"
    path.write_text(render(settings, secrets_dir=args.workdir / "secrets"))
    exec_envoy(path, args.concurrency)


if __name__ == "__main__":
    main()
