"""Runs the soak: ``python -m soak [--seconds 600] [--out RELIABILITY.md]``.

Starts the stack as `saxgw up` does (2 gateways, an embedded cell with 2 model servers,
Envoy) on free ports, drives a mixed load through Envoy's HTTP/JSON port (generate, listcell,
streams, publish/unpublish churn), and kills the admin, a model server and a gateway with
SIGKILL in the middle. The supervisors restart them; the report says what callers saw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

from gateway.cell import CellSettings
from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from soak._load import Disruption, Soak
from soak._report import render


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    default = float(os.environ.get("SOAK_SECONDS", "600"))
    parser.add_argument("--seconds", type=float, default=default, help="load duration")
    parser.add_argument("--out", default="RELIABILITY.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        base = Path(tmp)
        (base / "logs").mkdir()
        sax_root = str(base / "sax-root")
        cell = CellSettings(
            sax_root=sax_root,
            fs_root=str(base / "fs-root"),
            admin_port=free_port(),
            num_model_servers=2,
            model_server_ports=(free_port(), free_port()),
        )
        settings = StackSettings(
            gateway=GatewaySettings(client=ClientSettings(sax_root=sax_root)),
            cell=cell,
            gateway_ports=(free_port(), free_port()),
            envoy=EnvoySettings(
                gateway_endpoints=(),
                listen_address="127.0.0.1",
                listen_port=free_port(),
                admin_port=free_port(),
            ),
            log_dir=str(base / "logs"),
        )
        print(f"soak: starting the stack; load for {args.seconds:.0f} s", flush=True)
        with Stack(settings) as stack:
            if not stack.wait_healthy(timeout=120):
                raise SystemExit("soak: the stack never became healthy")
            supervisor = Supervisor(  # as `saxgw up` runs it, watchdog included
                stack.group,
                stack.settings.restart,
                report=lambda line: print(line, flush=True),
                probes=stack.probes(),
            )
            d = args.seconds
            plan = [
                Disruption(at=0.4 * d, what="admin", port=cell.admin_port),
                Disruption(at=0.55 * d, what="model server", port=cell.model_server_ports[0]),
                Disruption(at=0.7 * d, what="gateway", port=settings.gateway_ports[0]),
            ]
            soak = Soak(stack, supervisor, plan)
            started = time.time()
            try:
                asyncio.run(soak.run(args.seconds))
            finally:
                supervisor.close()
            machine = f"{platform.node()} ({os.cpu_count()} cores), {platform.platform()}"
            report = render(soak, seconds=args.seconds, started=started, machine=machine)
    Path(args.out).write_text(report)
    print(f"soak: wrote {args.out}")


if __name__ == "__main__":
    main()
