"""A/B of grpc settings in the gateway process: CPU per request, interleaved.

    python -m bench.grpc_ab                       # the variants below, 3 rounds of 3 s
    python -m bench.grpc_ab --rounds 5 --seconds 5

Starts one embedded cell (CPU 0) and one gateway per variant (CPU 1, each with its own
environment), then drives each gateway with h2load (gRPC, c=64 on one connection) in an
order rotated per round. CPU per request (user + system of the gateway, /proc) holds up
better than req/s on a shared machine: it is what the gateway spends, not what it was
given. Every figure is printed with the 1-minute load average at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

from saxgateway.v1 import gateway_pb2

from bench._loadgen import grpc_frame, h2load
from bench._unary import GATEWAY_GENERATE, cpu_seconds
from gateway.cell import CellSettings, cell_argv
from gateway.client import Client, ClientSettings
from gateway.launch.processes import ProcessGroup, free_port, port_open

CELL = "/sax/ab"
MODEL = f"{CELL}/ab"
PROMPT = "Q: Who is Harry Potter's mom? A: "

EE_OFF = "-event_engine_client,-event_engine_listener"
#: Variant name -> (GRPC_EXPERIMENTS of its gateway, "" = grpcio's defaults; its event loop).
VARIANTS = {
    "grpc-default": ("", "asyncio"),
    "ee-client-listener-off": (EE_OFF, "asyncio"),
    "ee-all-off": (EE_OFF + ",-event_engine_callback_cq", "asyncio"),
    "ee-off-uvloop": (EE_OFF, "uvloop"),
}


def load_average() -> float:
    return os.getloadavg()[0]


async def _publish(root: str) -> None:
    async with Client(ClientSettings(sax_root=root)) as client:
        await client.publish(MODEL, "sax_gateway.testing.TestLM", "None", 1, {"text": "Lily."})
        await client.wait_for_ready(MODEL, 1, timeout=60)


async def _measure(
    ports: dict[str, int], pids: dict[str, int], rounds: int, seconds: float, concurrency: int
) -> None:
    frame = grpc_frame(gateway_pb2.GenerateRequest(model=MODEL, query=PROMPT).SerializeToString())
    names = list(ports)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    rps: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up
        await h2load(
            f"http://127.0.0.1:{ports[name]}{GATEWAY_GENERATE}",
            frame,
            concurrency=concurrency,
            seconds=1.0,
        )
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            before = cpu_seconds(pids[name])
            sample = await h2load(
                f"http://127.0.0.1:{ports[name]}{GATEWAY_GENERATE}",
                frame,
                concurrency=concurrency,
                seconds=seconds,
                min_response_bytes=5,
            )
            used = cpu_seconds(pids[name]) - before
            cpu[name].append(used * 1e6 / max(sample.requests, 1))
            rps[name].append(sample.rps)
            print(
                f"round {r + 1} {name:<24} {sample.rps:7.0f} req/s "
                f"{cpu[name][-1]:6.0f} us CPU/req  errors {sample.errors}  "
                f"load {load_average():.2f}",
                flush=True,
            )
    print(f"\nmedians of {rounds} rounds, c={concurrency}:")
    for name in names:
        print(
            f"  {name:<24} {statistics.median(rps[name]):7.0f} req/s "
            f"{statistics.median(cpu[name]):6.0f} us CPU/req  "
            f"({VARIANTS[name][0] or 'defaults'}, {VARIANTS[name][1]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    cell_cpu, front_cpu = {cpus[0]}, {cpus[-1]}
    group = ProcessGroup(grace=5.0)
    with tempfile.TemporaryDirectory(prefix="grpc-ab-") as tmp:
        root = str(Path(tmp) / "root")
        try:
            os.sched_setaffinity(0, cell_cpu)
            settings = CellSettings(
                sax_root=root,
                cell=CELL,
                admin_port=free_port(),
                model_server_ports=(free_port(),),
                poll_interval=0.5,
            )
            group.start("cell", cell_argv(settings))
            address = f"127.0.0.1:{settings.model_server_ports[0]}"
            group.wait_until("cell", lambda: port_open(address), 60)
            os.sched_setaffinity(0, front_cpu)
            asyncio.run(_publish(root))
            ports = {name: free_port() for name in VARIANTS}
            for name, (experiments, loop) in VARIANTS.items():
                group.start(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "gateway.cli",
                        "gateway",
                        f"--event-loop={loop}",
                        f"--sax-root={root}",
                        "--host=127.0.0.1",
                        f"--port={ports[name]}",
                    ],
                    env={"GRPC_EXPERIMENTS": experiments},
                )
                group.wait_until(name, functools.partial(port_open, f"127.0.0.1:{ports[name]}"), 60)
            pids = {name: proc.pid for name, proc in group.children if name in VARIANTS}
            asyncio.run(_measure(ports, pids, args.rounds, args.seconds, args.concurrency))
        finally:
            group.stop()


if __name__ == "__main__":
    main()
