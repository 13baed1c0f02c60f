"""A/B of front-end variants (a gateway's flags and its Envoy's config), CPU per request.

    python -m bench.front_ab                          # the variants below, 5 rounds of 3 s
    python -m bench.front_ab --rounds 6 --seconds 4 --only current,header-no-lua

Starts the bench stack (`_stack.BenchStack`: the cell on CPU 0, everything else on CPU 1),
then one gateway and one Envoy per variant, each Envoy rendered as `saxgw up` renders it and
changed by the variant, all pinned like the stack's own. Each round drives every variant's
Envoy with wrk (HTTP/JSON `POST /generate`) at c=1 and c=64, in an order rotated per round,
and reads the CPU its gateway and its Envoy spent (/proc) per request. Side by side on one
stack, so the machine's speed, which drifts on this VM, is the same for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from bench._envoy_variants import Config, _drop_filter, _hcm, _vhost
from bench._loadgen import wrk
from bench._stack import PROMPT, UNARY_MODEL, BenchStack, pinned
from bench._unary import cpu_seconds
from bench.grpc_ab import load_average
from gateway.launch.envoy import envoy_binary, render
from gateway.launch.processes import free_port, port_open
from gateway.launch.tuning import grpc_env


def _no_access_log(config: Config) -> None:
    del _hcm(config)["access_log"]


_KEEP = {"envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"}


def _only_transcoder_router(config: Config) -> None:
    hcm = _hcm(config)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] in _KEEP]


def _hot_routes_first(config: Config) -> None:
    """The unary generate's own paths (HTTP and gRPC) matched right after the guards that
    apply to every path, instead of after some twenty routes, five of them regexes."""
    routes = _vhost(config)["routes"]
    catch_all = routes[-1]
    guard = next(i for i, r in enumerate(routes) if "grpc-timeout" in str(r["match"]))
    hot = [
        {**catch_all, "match": {"path": p}}
        for p in ("/generate", "/saxgateway.v1.SaxGateway/Generate")
    ]
    routes[guard + 1 : guard + 1] = hot


def _no_request_id(config: Config) -> None:
    hcm = _hcm(config)
    for key in (
        "generate_request_id",
        "preserve_external_request_id",
        "always_set_request_id_in_response",
        "request_id_extension",
    ):
        hcm.pop(key, None)
    hcm["generate_request_id"] = False


def _plain_cluster(config: Config) -> None:
    cluster = config["static_resources"]["clusters"][0]
    for key in ("health_checks", "outlier_detection", "circuit_breakers"):
        cluster.pop(key, None)
    _vhost(config).pop("retry_policy", None)


#: Variant name -> (the gateway's extra flags, a change to its Envoy's config).
VARIANTS: dict[str, tuple[list[str], Callable[[Config], None]]] = {
    "current": ([], lambda c: None),
    # The unary cost header sent by the gateway itself, and Envoy without the Lua filter
    # that otherwise lifts it from the trailer.
    "header-no-lua": (["--cost-header"], _drop_filter("cost_header")),
    "no-access-log": ([], _no_access_log),
    "only-transcoder-router": ([], _only_transcoder_router),
    "hot-routes-first": ([], _hot_routes_first),
    "no-request-id": ([], _no_request_id),
    "plain-cluster": ([], _plain_cluster),
    # Without the filter that empties a HEAD reply's body (a composite filter whose matcher
    # reads :method on every request, and runs its Lua for HEAD only).
    "no-head-filter": ([], _drop_filter("head_bodies")),
    # Without the header_mutation filter that hands the client's HTTP method to the gateway
    # and the access log (x-saxgw-http-method, first in the chain).
    "no-method-filter": ([], _drop_filter("http_method")),
}


def _start(stack: BenchStack, name: str, flags: list[str], change: Callable[[Config], None]) -> int:
    gateway_port, envoy_port, admin_port = free_port(), free_port(), free_port()
    py = sys.executable
    stack.group.start(
        f"ab-gateway-{name}",
        [
            py,
            "-m",
            "gateway.cli",
            "gateway",
            f"--sax-root={stack.real_root}",
            "--host=127.0.0.1",
            f"--port={gateway_port}",
            "--default-timeout=60",
            *flags,
        ],
        env=grpc_env(),
        log_path=stack._log(f"ab-gateway-{name}"),
    )
    stack._wait(f"ab-gateway-{name}", f"127.0.0.1:{gateway_port}")
    assert stack._stack is not None
    envoy = dataclasses.replace(
        stack._stack.envoy,
        gateway_endpoints=(f"127.0.0.1:{gateway_port}",),
        listen_port=envoy_port,
        admin_port=admin_port,
    )
    config = yaml.safe_load(render(envoy, secrets_dir=stack.workdir / f"secrets-{name}"))
    change(config)
    path = stack.workdir / f"envoy-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        str(envoy_binary()),
        "-c",
        str(path),
        "--log-level",
        "warn",
        "--disable-hot-restart",
        "--concurrency",
        str(envoy.concurrency or 1),
    ]
    stack.group.start(f"ab-envoy-{name}", argv, log_path=stack._log(f"ab-envoy-{name}"))
    stack.group.wait_until(f"ab-envoy-{name}", lambda: port_open(f"127.0.0.1:{envoy_port}"), 30)
    return envoy_port


async def _round(
    stack: BenchStack, ports: dict[str, int], order: list[str], c: int, seconds: float
) -> dict[str, dict[str, float]]:
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT})
    out = {}
    for name in order:
        url = f"http://127.0.0.1:{ports[name]}/generate"
        await wrk(url, body, concurrency=c, seconds=1)  # warm
        pids = [stack.pid(f"ab-gateway-{name}"), stack.pid(f"ab-envoy-{name}")]
        before = [cpu_seconds(p) for p in pids]
        sample = await wrk(url, body, concurrency=c, seconds=seconds)
        gw, envoy = (
            (cpu_seconds(p) - b) * 1e6 / sample.requests for p, b in zip(pids, before, strict=True)
        )
        if sample.errors:
            raise RuntimeError(f"{name}: {sample.errors} errors")
        out[name] = {
            "rps": sample.rps,
            "p50_ms": sample.p50_ms,
            "gateway_us": gw,
            "envoy_us": envoy,
            "front_us": gw + envoy,
        }
    return out


async def _measure(stack: BenchStack, ports: dict[str, int], rounds: int, seconds: float) -> None:
    names = list(ports)
    for c in (64, 1):
        per: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            result = await _round(stack, ports, order, c, seconds)
            line = "  ".join(
                f"{n} {v['front_us']:.0f}µs {v['rps']:.0f}/s" for n, v in result.items()
            )
            print(f"c={c} round {r + 1} (load {load_average():.1f}): {line}", flush=True)
            for n, v in result.items():
                per[n].append(v)
        base = per[names[0]]
        for n in names:
            med = {k: statistics.median(v[k] for v in per[n]) for k in per[n][0]}
            lower = sum(a["front_us"] < b["front_us"] for a, b in zip(per[n], base, strict=True))
            print(
                f"c={c} {n:<16} front {med['front_us']:.0f} µs (gateway {med['gateway_us']:.0f},"
                f" Envoy {med['envoy_us']:.0f}), {med['rps']:.0f} req/s, p50 {med['p50_ms']:.2f}"
                f" ms; front lower than {names[0]} in {lower} of {rounds} rounds",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", help="comma-separated variant names (first: the reference)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="front-ab-") as tmp, BenchStack(Path(tmp)) as stack:
        with pinned(stack.cpus.front):
            ports = {n: _start(stack, n, *VARIANTS[n]) for n in names}
        asyncio.run(_measure(stack, ports, args.rounds, args.seconds))


if __name__ == "__main__":
    main()
