"""Design (b) as it would be built (bench/_full_envoy.py) against its ceiling and the product
path: Envoy's CPU per request, side by side on one bench stack.

    python -m bench.full_ab                           # full (b), ceiling, product; 3 rounds of 3 s
    python -m bench.full_ab --variants full,no-rbac,no-access-log --rounds 4
    python -m bench.full_ab --check                   # the functional checks only

Starts the bench stack (`_stack.BenchStack`), publishes `_full_envoy.MORE_MODELS`, and one
(b) Envoy per variant (pinned like the stack's own Envoys, to the front core). First checks
that (b) works (`check`): each route answers the model's text with a key, 401 without one,
403 for a client not allowed the model, 404 for a model it has no cluster for, all JSON.
Then each round drives `envoy-http` (the product path: Envoy -> gateway -> model server),
`envoy-direct-http` (the ceiling: transcoder and router only) and each variant with wrk
(HTTP/1.1 JSON) at c=64 and c=1, in an order rotated per round, and reads each Envoy's CPU
time (/proc) per request; the product path's gateway CPU too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import _full_envoy, _machine
from bench._direct_envoy import ROUTE as DIRECT_ROUTE
from bench._loadgen import Sample, h2load, wrk
from bench._stack import CELL, PROMPT, TEST_LM, UNARY_MODEL, BenchStack, pinned
from bench._unary import cpu_seconds
from bench.grpc_ab import load_average
from gateway.client import Client, ClientSettings
from gateway.edge import parse_edge
from gateway.launch.processes import free_port, port_open

BODY = json.dumps({"model": UNARY_MODEL, "query": PROMPT})
KEY = f"x-api-key: {_full_envoy.KEYS['bench']}"


def _start(stack: BenchStack, variant: str) -> tuple[int, int]:
    port, admin = free_port(), free_port()
    stack.group.start(
        f"full-{variant}",
        [
            sys.executable,
            "-m",
            "bench._full_envoy",
            f"--port={port}",
            f"--admin-port={admin}",
            f"--model-server={stack.model_server}",
            f"--gateway={stack.gateway}",
            f"--workdir={stack.workdir / f'full-{variant}'}",
            f"--variant={variant}",
        ],
        log_path=stack._log(f"full-{variant}"),
    )
    stack.group.wait_until(f"full-{variant}", lambda: port_open(f"127.0.0.1:{port}"), 30)
    return port, admin


async def _publish(stack: BenchStack) -> None:
    async with Client(ClientSettings(sax_root=str(stack.real_root))) as client:
        for model, text in _full_envoy.MORE_MODELS.items():
            await client.publish(model, TEST_LM, "None", 1, {"text": text})
        for model in _full_envoy.MORE_MODELS:
            await client.wait_for_ready(model, 1, timeout=60)


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POSTs JSON; the status and the JSON body (every reply must be JSON)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def check(base: str) -> list[str]:
    """What (b) answers, one line each; raises AssertionError on the first wrong answer."""
    keys = {n: {"x-api-key": k} for n, k in _full_envoy.KEYS.items()}
    b1 = f"{CELL}/benchb1"
    b2 = f"{CELL}/benchb2"
    expected_texts = {UNARY_MODEL: "Lily Evans Potter.", **_full_envoy.MORE_MODELS}
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], int]] = []
    for model in _full_envoy.MODELS:
        encoded = model.replace("/", "%2F")
        cases.append(("body", "/generate", {"model": model, "query": PROMPT}, keys["bench"], 200))
        cases.append(
            ("path", f"/v1/models/{encoded}:generate", {"query": PROMPT}, keys["bench"], 200)
        )
    cases += [
        ("narrow, allowed", "/generate", {"model": b1, "query": "q"}, keys["narrow"], 200),
        ("narrow, not allowed", "/generate", {"model": b2, "query": "q"}, keys["narrow"], 403),
        (
            "narrow, not allowed (path)",
            "/v1/models/%2Fsax%2Ftest%2Fbenchb2:generate",
            {"query": "q"},
            keys["narrow"],
            403,
        ),
        ("admin role only", "/generate", {"model": UNARY_MODEL, "query": "q"}, keys["ops"], 403),
        ("no key", "/generate", {"model": UNARY_MODEL, "query": "q"}, {}, 401),
        (
            "wrong key",
            "/generate",
            {"model": UNARY_MODEL, "query": "q"},
            {"x-api-key": "nope-0123456789abcdef"},
            401,
        ),
        (
            "no such model",
            "/generate",
            {"model": f"{CELL}/nosuch", "query": "q"},
            keys["bench"],
            404,
        ),
        (
            "no such model (path)",
            "/v1/models/%2Fsax%2Ftest%2Fnosuch:generate",
            {"query": "q"},
            keys["bench"],
            404,
        ),
    ]
    lines = []
    for name, path, body, headers, status in cases:
        got, reply = post(base + path, body, headers)
        shown = {k: v for k, v in reply.items() if k != "details"}
        line = f"{name:<28} POST {path} -> {got} {json.dumps(shown)}"
        lines.append(line)
        assert got == status, line
        if status == 200:
            model = body.get("model") or path.split("/")[3].split(":")[0].replace("%2F", "/")
            assert reply["texts"][0]["text"] == expected_texts[model], line
        else:
            assert "message" in reply or "error" in reply, line
    return lines


def check_discovery(stack: BenchStack, base: str, admin: int, workdir: Path) -> list[str]:
    """Every model's calls above reached its own cluster and none the gateway's (Envoy's
    counters), and a model whose cluster the control plane removed from the CDS file is a 404."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=upstream_rq_total") as r:
        stats = dict(line.split(": ") for line in r.read().decode().splitlines())
    counts = {k.split(".")[1]: int(v) for k, v in stats.items() if k.startswith("cluster.")}
    lines = [f"requests per cluster: {counts}"]
    assert counts["gateway_grpc"] == 0, lines[-1]
    assert all(counts[_full_envoy.cluster_name(m)] >= 2 for m in _full_envoy.MODELS), lines[-1]
    gone = f"{CELL}/benchb2"
    edge = parse_edge(_full_envoy.EDGE)
    kept = {m: [stack.model_server] for m in _full_envoy.MODELS if m != gone}
    _full_envoy.write_discovery(workdir, edge, kept)
    url = f"http://127.0.0.1:{admin}/clusters"
    for _ in range(100):
        with urllib.request.urlopen(url, timeout=5) as response:
            if "benchb2" not in response.read().decode():
                break
        time.sleep(0.1)
    key = {"x-api-key": _full_envoy.KEYS["bench"]}
    got, reply = post(base + "/generate", {"model": gone, "query": "q"}, key)
    shown = {k: v for k, v in reply.items() if k != "details"}
    lines.append(
        f"{'cluster removed (CDS)':<28} POST /generate {gone} -> {got} {json.dumps(shown)}"
    )
    assert got == 404, lines[-1]
    # The model back, with a replica that refuses connections beside the live one: every
    # call is retried on the other host (previous_hosts), none fails.
    dead = f"127.0.0.1:{free_port()}"
    _full_envoy.write_discovery(
        workdir, edge, {m: [dead, stack.model_server] for m in _full_envoy.MODELS}
    )
    for _ in range(100):
        with urllib.request.urlopen(url, timeout=5) as response:
            if f"benchb2::{dead}" in response.read().decode():
                break
        time.sleep(0.1)
    statuses = [post(base + "/generate", {"model": gone, "query": "q"}, key)[0] for _ in range(10)]
    name = _full_envoy.cluster_name(gone)
    stat = f"http://127.0.0.1:{admin}/stats?filter={name}.upstream_rq_retry$"
    with urllib.request.urlopen(stat, timeout=5) as response:
        retries = response.read().decode().strip()
    lines.append(f"{'a dead replica beside one':<28} 10 calls of {gone} -> {statuses} ({retries})")
    assert statuses == [200] * 10, lines[-1]
    # One call in flight for the model (quotas.models max_in_flight 1, max_queued 0): what
    # the calls past it get from the circuit breaker.
    quotas = {"models": {gone: {"max_in_flight": 1, "max_queued": 0}}}
    tight = parse_edge({**_full_envoy.EDGE, "quotas": quotas})
    _full_envoy.write_discovery(
        workdir, tight, {m: [stack.model_server] for m in _full_envoy.MODELS}
    )
    time.sleep(1.0)  # Envoy reads the file when it changes
    with ThreadPoolExecutor(32) as pool:
        replies = list(
            pool.map(
                lambda _: post(base + "/generate", {"model": gone, "query": "q"}, key), range(64)
            )
        )
    refused = [(s, r) for s, r in replies if s != 200]
    shown = {k: v for k, v in refused[0][1].items() if k != "details"} if refused else {}
    lines.append(
        f"{'one call in flight at most':<28} 64 calls, 32 at once: "
        f"{len(replies) - len(refused)} x 200, others {sorted({s for s, _ in refused})} "
        + json.dumps(shown)
    )
    _full_envoy.write_discovery(
        workdir, edge, {m: [stack.model_server] for m in _full_envoy.MODELS}
    )
    return lines


def _loader(
    url: str, body: str, c: int, headers: tuple[str, ...], rate: float | None
) -> Callable[[float], Awaitable[Sample]]:
    """wrk (a closed loop: c requests in flight); with ``rate``, h2load sending ``rate``
    requests a second over c HTTP/1.1 connections (an open loop: the same rate on every
    path, so that each Envoy batches alike, whatever the neighbours leave it)."""
    if rate is None:
        return lambda s: wrk(url, body, concurrency=c, seconds=s, headers=headers)
    data = body.encode()
    return lambda s: h2load(
        url, data, concurrency=c, seconds=s, http1=True, rps=rate / c, headers=headers
    )


async def _measure(
    stack: BenchStack,
    urls: dict[str, tuple[str, str, tuple[str, ...]]],
    pids: dict[str, int],
    rounds: int,
    seconds: float,
    concurrencies: tuple[int, ...],
    rate: float | None,
) -> list[dict[str, Any]]:
    names = list(urls)
    records: list[dict[str, Any]] = []
    gateway = stack.pid("gateway-0")
    for c in concurrencies:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                url, body, headers = urls[name]
                load = _loader(url, body, c, headers, rate)
                await load(1)  # warm
                before = cpu_seconds(pids[name]), cpu_seconds(gateway)
                sample = await load(seconds)
                after = cpu_seconds(pids[name]), cpu_seconds(gateway)
                if sample.errors:
                    raise RuntimeError(f"{name}: {sample.errors} errors")
                n = sample.requests
                rec = {
                    "c": c,
                    "round": r + 1,
                    "path": name,
                    "rps": sample.rps,
                    "p50_ms": sample.p50_ms,
                    "p99_ms": sample.p99_ms,
                    "envoy_us": (after[0] - before[0]) * 1e6 / n,
                    "gateway_us": (after[1] - before[1]) * 1e6 / n,
                    "load": load_average(),
                }
                records.append(rec)
                print(
                    f"c={c:<2} round {r + 1} {name:<22} Envoy {rec['envoy_us']:6.0f} µs/req"
                    f" gateway {rec['gateway_us']:6.0f} {rec['rps']:7.0f} req/s"
                    f" p50 {rec['p50_ms']:.2f} ms (load {rec['load']:.1f})",
                    flush=True,
                )
    return records


def _summary(records: list[dict[str, Any]], names: list[str]) -> None:
    for c in sorted({x["c"] for x in records}, reverse=True):
        for r in sorted({x["round"] for x in records}):
            row = {x["path"]: x for x in records if x["c"] == c and x["round"] == r}
            full = row["full"]["envoy_us"] if "full" in row else None
            ceiling = row["envoy-direct-http"]["envoy_us"]
            product = row["envoy-http"]["envoy_us"] + row["envoy-http"]["gateway_us"]
            parts = [f"{n} {row[n]['envoy_us']:.0f}" for n in names if n in row]
            ratios = (
                f"; full/ceiling {full / ceiling:.2f}x, full/product {full / product:.2f}x"
                if full
                else ""
            )
            print(f"c={c} round {r}: {', '.join(parts)} (product front {product:.0f}){ratios}")
        for n in names:
            mine = [x for x in records if x["c"] == c and x["path"] == n]
            med = {
                k: statistics.median(x[k] for x in mine)
                for k in ("envoy_us", "gateway_us", "rps", "p50_ms")
            }
            print(
                f"c={c} median {n:<22} Envoy {med['envoy_us']:.0f} µs, gateway "
                f"{med['gateway_us']:.0f}, {med['rps']:.0f} req/s, p50 {med['p50_ms']:.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--variants", default="full", help="comma-separated _full_envoy.VARIANTS")
    parser.add_argument("--check", action="store_true", help="the functional checks only")
    parser.add_argument("--concurrency", default="64,1", help="comma-separated, in this order")
    parser.add_argument(
        "--rate", type=float, help="an open loop: requests a second in all (h2load), not wrk"
    )
    parser.add_argument("--out", type=Path, help="write the per-run records here (JSON)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory(prefix="full-ab-") as tmp, BenchStack(Path(tmp)) as stack:
        asyncio.run(_publish(stack))
        with pinned(stack.cpus.front):
            started = {v: _start(stack, v) for v in variants}
        ports = {v: p for v, (p, _) in started.items()}
        if "full" in started:
            base = f"http://127.0.0.1:{ports['full']}"
            lines = check(base)
            lines += check_discovery(stack, base, started["full"][1], stack.workdir / "full-full")
            for line in lines:
                print(line, flush=True)
        if args.check:
            return
        urls: dict[str, tuple[str, str, tuple[str, ...]]] = {
            "envoy-http": (f"http://{stack.envoy}/generate", BODY, ()),
            "envoy-direct-http": (
                f"http://{stack.direct_envoy}{DIRECT_ROUTE}",
                json.dumps({"model_key": UNARY_MODEL, "text": PROMPT}),
                (),
            ),
            **{v: (f"http://127.0.0.1:{p}/generate", BODY, (KEY,)) for v, p in ports.items()},
        }
        if "full" in ports:  # the model in the path, not the body: no json_to_metadata
            path = "/v1/models/" + UNARY_MODEL.replace("/", "%2F") + ":generate"
            query = json.dumps({"query": PROMPT})
            urls["full-path"] = (f"http://127.0.0.1:{ports['full']}{path}", query, (KEY,))
        pids = {
            "envoy-http": stack.pid("envoy"),
            "envoy-direct-http": stack.pid("envoy-direct"),
            **{v: stack.pid(f"full-{v}") for v in variants},
        }
        if "full" in ports:
            pids["full-path"] = pids["full"]
        concurrencies = tuple(int(c) for c in args.concurrency.split(","))
        before = _machine.speed()
        records = asyncio.run(
            _measure(stack, urls, pids, args.rounds, args.seconds, concurrencies, args.rate)
        )
        _summary(records, list(urls))
        speed = _machine.speed_over(before, _machine.speed())
        print(f"machine speed (sum() over 1,000 ints, µs; steal): {speed}")
        if args.out:
            args.out.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
