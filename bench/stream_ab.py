"""A/B of a stream's start through the product path: CPU per stream and time to first byte.

    mkdir /tmp/main-src && git archive main gateway | tar -x -C /tmp/main-src
    python -m bench.stream_ab --tree main=/tmp/main-src --tree branch=.     # interleaved
    python -m bench.stream_ab --tree main=/tmp/main-src --tree branch=. --unary 3
    python -m bench.stream_ab --tree branch=. --tokens 96                  # CPU per token
    python -m bench.stream_ab --tree branch=. --profile 15                 # py-spy, one tree
    python -m bench.stream_ab --tree branch=. --profile 15 --tokens 1      # ... 200-token streams

Starts one cell (the bench's stamped admin and model server, CPU 0) and, per source tree, a
stack as `saxgw up` runs it (one gateway process and its Envoy, CPU 1), its gateway running
that tree's ``gateway`` package (``PYTHONPATH``; Envoy's config is rendered from this tree).
Each round, in an order rotated per round, every stack gets:

- ``cpu``: ``--streams`` SSE streams (``POST /generate_stream``) of a one-token model, 16 at
  a time, and the CPU its gateway and its Envoy spent (/proc) per stream: the cost of
  starting a stream and delivering its first (and only) token;
- ``c=1`` and ``c=16``: streams of the bench's stamped 20-token model (20 ms a token), one at a
  time and 16 at once, for their first byte and token lag (bench/_streaming.py's measures);
- with ``--unary SECONDS``: wrk's ``POST /generate`` of the one-token model at c=64, and the
  CPU per request, as `make bench` reads the front end's;
- with ``--tokens STREAMS``: that many streams of a 200-token model that waits for nothing,
  16 at a time, and the CPU per token beyond a stream's first (their CPU per stream less the
  one-token stream's, over 199): what relaying one more token costs the front end, the work
  a burst of tokens (one per stream, as a model server's batch step sends them) queues for.

Load averages are printed with every round: latency on this shared machine is noisy, CPU per
stream much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import _profile
from bench._loadgen import percentile, wrk
from bench._stack import CELL, PROMPT, STREAM_MODEL, TEST_LM, pinned
from bench._streaming import Trace, sse
from bench._unary import cpu_seconds
from gateway.client import Client, ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import ProcessGroup, free_port, port_open
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.tuning import grpc_env, plan_cores

ONE_MODEL = f"{CELL}/benchone"
LONG_MODEL = f"{CELL}/benchlong"
LONG_TOKENS = 200
#: The children run from the work directory: started from a tree's root, ``python -m`` would
#: put that tree's ``gateway`` first, whatever PYTHONPATH says. The cell runs this tree's.
_HERE = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
MODELS = {
    STREAM_MODEL: {
        "text": " ".join(f"t{i}" for i in range(20)),
        "delay_ms": "20",
        "bench_stamp": "1",
    },
    ONE_MODEL: {"text": "t0"},
    LONG_MODEL: {"text": " ".join(f"t{i}" for i in range(LONG_TOKENS))},
}
WIDTH = 16  # streams at once


async def _sse(port: int, model: str) -> Trace:
    return await sse(
        f"127.0.0.1:{port}", "/generate_stream", {"model": model, "query": PROMPT}, "deltas"
    )


async def _cpu_per_stream(
    port: int, pids: list[int], streams: int, model: str = ONE_MODEL
) -> list[float]:
    """µs of CPU per stream of ``model`` (by default one token), for each of ``pids``."""
    before = [cpu_seconds(p) for p in pids]
    for _ in range(streams // WIDTH):
        await asyncio.gather(*(_sse(port, model) for _ in range(WIDTH)))
    done = streams // WIDTH * WIDTH
    return [(cpu_seconds(p) - b) * 1e6 / done for p, b in zip(pids, before, strict=True)]


async def _latency(port: int, sequential: int, batches: int) -> dict[str, list[Trace]]:
    one = [await _sse(port, STREAM_MODEL) for _ in range(sequential)]
    many: list[Trace] = []
    for _ in range(batches):
        many.extend(await asyncio.gather(*(_sse(port, STREAM_MODEL) for _ in range(WIDTH))))
    return {"1": one, str(WIDTH): many}


def _figures(traces: list[Trace]) -> dict[str, float]:
    lags = [lag for t in traces for lag in t.lags_ms]
    return {
        "first_byte_p50": percentile([t.first_byte_ms for t in traces], 50),
        "lag_p99": percentile(lags, 99),
    }


async def _unary_cpu(port: int, pids: list[int], seconds: float) -> list[float]:
    """µs of CPU per unary ``POST /generate`` of the one-token model (wrk, c=64), per pid."""
    url, body = (
        f"http://127.0.0.1:{port}/generate",
        json.dumps({"model": ONE_MODEL, "query": PROMPT}),
    )
    await wrk(url, body, concurrency=64, seconds=1)  # warm
    before = [cpu_seconds(p) for p in pids]
    sample = await wrk(url, body, concurrency=64, seconds=seconds)
    if sample.errors:
        raise RuntimeError(f"{sample.errors} errors")
    return [(cpu_seconds(p) - b) * 1e6 / sample.requests for p, b in zip(pids, before, strict=True)]


async def _measure(stacks: dict[str, tuple[int, list[int]]], args: argparse.Namespace) -> None:
    names = list(stacks)
    for port, _ in stacks.values():  # warm-up
        await _cpu_per_stream(port, [], WIDTH * 2)
        await _latency(port, 2, 1)
        if args.tokens:
            await _cpu_per_stream(port, [], WIDTH, LONG_MODEL)
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            port, pids = stacks[name]
            gw, envoy = await _cpu_per_stream(port, pids, args.streams)
            lat = await _latency(port, args.sequential, args.batches)
            one, many = _figures(lat["1"]), _figures(lat[str(WIDTH)])
            row = {
                "gateway_us": gw,
                "envoy_us": envoy,
                "fb1": one["first_byte_p50"],
                "fb16": many["first_byte_p50"],
                "lag99_1": one["lag_p99"],
                "lag99_16": many["lag_p99"],
            }
            if args.unary:
                row["unary_gateway_us"], row["unary_envoy_us"] = await _unary_cpu(
                    port, pids, args.unary
                )
            if args.tokens:
                long = await _cpu_per_stream(port, pids, args.tokens, LONG_MODEL)
                per_token = [
                    (c - s) / (LONG_TOKENS - 1) for c, s in zip(long, (gw, envoy), strict=True)
                ]
                row["token_gateway_us"], row["token_envoy_us"] = per_token
            rows[name].append(row)
            extra = _optional(row, args)
            print(
                f"round {r + 1} {name:<10} CPU/stream gateway {gw:5.0f} µs Envoy {envoy:4.0f} µs;"
                f" first byte p50 c=1 {row['fb1']:6.2f} ms c=16 {row['fb16']:6.2f} ms;"
                f" lag p99 c=1 {row['lag99_1']:5.2f} c=16 {row['lag99_16']:5.2f} ms;{extra}"
                f" load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    print(f"\nmedians of {args.rounds} rounds ({args.streams} one-token streams per CPU figure):")
    for name in names:
        med = {k: statistics.median(v[k] for v in rows[name]) for k in rows[name][0]}
        print(
            f"  {name:<10} CPU/stream gateway {med['gateway_us']:5.0f} µs Envoy"
            f" {med['envoy_us']:4.0f} µs; first byte p50 c=1 {med['fb1']:6.2f} ms c=16"
            f" {med['fb16']:6.2f} ms; lag p99 c=1 {med['lag99_1']:5.2f} c=16"
            f" {med['lag99_16']:5.2f} ms;{_optional(med, args)}".rstrip(";"),
            flush=True,
        )


def _optional(row: dict[str, float], args: argparse.Namespace) -> str:
    """The figures of ``--unary`` and ``--tokens``, each ending in ``;``."""
    unary = (
        f" unary c=64 gateway {row['unary_gateway_us']:4.0f} µs Envoy"
        f" {row['unary_envoy_us']:4.0f} µs;"
        if args.unary
        else ""
    )
    tokens = (
        f" per token gateway {row['token_gateway_us']:5.1f} µs Envoy"
        f" {row['token_envoy_us']:5.1f} µs;"
        if args.tokens
        else ""
    )
    return unary + tokens


async def _profile_first(
    stacks: dict[str, tuple[int, list[int]]], seconds: float, out: Path, model: str
) -> None:
    """py-spy on the first tree's gateway while streams of ``model`` run, 16 at a time."""
    port, pids = next(iter(stacks.values()))
    await _cpu_per_stream(port, [], WIDTH * 4, model)  # warm-up

    async def load() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.gather(*(_sse(port, model) for _ in range(WIDTH)))

    for pid, main, name in ((pids[0], "gateway/cli/run.py", "gateway"),):
        raw = out / f"{name}.raw"
        summary = await _profile.record(
            pid, main=main, seconds=seconds, out=raw, load=load, log=print
        )
        print(f"--- {name}: {raw}")
        for part in ("by_layer", "self_time", "gateway_inclusive"):
            print(f"{part}:")
            for row in (summary or {}).get(part, []):
                print(f"  {row['percent']:5.1f}  {row['name']}")


async def _publish(root: str) -> None:
    async with Client(ClientSettings(sax_root=root)) as client:
        for model, overrides in MODELS.items():
            await client.publish(model, TEST_LM, "None", 1, overrides)
        for model in MODELS:
            await client.wait_for_ready(model, 1, timeout=60)


@contextlib.contextmanager
def _cell(workdir: Path, cpus: set[int]) -> Iterator[str]:
    """The bench's stamped admin and model server; yields the SAX_ROOT."""
    root = str(workdir / "sax-root")
    flags = [
        f"--sax-root={root}",
        f"--fs-root={workdir / 'fs-root'}",
        f"--cell={CELL}",
        "--poll-interval=0.5",
        "--log-level=WARNING",
    ]
    group = ProcessGroup(grace=5.0)
    try:
        with pinned(cpus):
            for name, module in (
                ("admin", "bench._stamped_admin"),
                ("modelserver", "bench._stamped_modelserver"),
            ):
                port = free_port()
                group.start(
                    name, [sys.executable, "-m", module, *flags, f"--port={port}"], env=_HERE
                )
                group.wait_until(name, functools.partial(port_open, f"127.0.0.1:{port}"), 60)
        asyncio.run(_publish(root))
        yield root
    finally:
        group.stop()


def _stack(root: str, tree: Path, workdir: Path) -> Stack:
    logs = workdir / "logs"
    logs.mkdir(parents=True)
    env = grpc_env() | {"PYTHONPATH": str(tree.resolve())}
    return Stack(
        StackSettings(
            gateway=GatewaySettings(
                client=ClientSettings(sax_root=root),
                default_timeout=60.0,
                max_streams_per_client=10_000,  # one client (127.0.0.1) opens every stream
            ),
            gateway_ports=(free_port(),),
            envoy=EnvoySettings(
                gateway_endpoints=(),
                listen_address="127.0.0.1",
                listen_port=free_port(),
                admin_port=free_port(),
                concurrency=plan_cores("auto", 1).envoy,
            ),
            log_dir=str(logs),
            gateway_env=env,
        )
    )


def _pid(stack: Stack, name: str) -> int:
    return next(proc.pid for child, proc in stack.group.children if child == name)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_ab", description=__doc__)
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR (repeat)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=480, help="one-token streams per CPU figure")
    parser.add_argument("--sequential", type=int, default=10, help="c=1 streams per round")
    parser.add_argument("--batches", type=int, default=3, help="batches of 16 per round")
    parser.add_argument(
        "--unary", type=float, metavar="SECONDS", help="also CPU per unary call (wrk, c=64)"
    )
    parser.add_argument(
        "--tokens", type=int, metavar="STREAMS", help="also CPU per token (200-token streams)"
    )
    parser.add_argument(
        "--profile",
        type=float,
        help="py-spy the first tree for SECONDS, only (with --tokens, the 200-token streams)",
    )
    parser.add_argument("--profile-dir", default="/tmp", help="where py-spy's output goes")
    args = parser.parse_args()
    trees = {name: Path(tree).resolve() for name, tree in (t.split("=", 1) for t in args.tree)}
    cpus = sorted(os.sched_getaffinity(0))
    cell_cpu, front_cpu = {cpus[0]}, {cpus[-1]}
    with tempfile.TemporaryDirectory(prefix="stream-ab-") as tmp, contextlib.ExitStack() as stop:
        os.sched_setaffinity(0, front_cpu)
        os.chdir(tmp)
        root = stop.enter_context(_cell(Path(tmp), cell_cpu))
        stacks: dict[str, Any] = {}
        for name, tree in trees.items():
            stack = stop.enter_context(_stack(root, tree, Path(tmp) / name))
            if not stack.wait_healthy(60):
                raise RuntimeError(f"{name}: the gateway never became healthy")
            port = int(stack.http_url.rsplit(":", 1)[1].split("/")[0])
            pids = [_pid(stack, "gateway-0"), _pid(stack, "envoy")]
            stacks[name] = (port, pids)
            print(f"{name}: {tree}, Envoy :{port}, pids {pids}", flush=True)
        if args.profile:
            model = LONG_MODEL if args.tokens else ONE_MODEL
            asyncio.run(_profile_first(stacks, args.profile, Path(args.profile_dir), model))
        else:
            asyncio.run(_measure(stacks, args))


if __name__ == "__main__":
    main()
