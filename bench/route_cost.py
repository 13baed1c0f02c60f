"""Envoy's CPU per ``POST /generate`` call against the number of direct routes.

Direct mode puts one route per direct model before the catch-all; every ``/generate`` call is
matched against them in order. This renders the product's Envoy in direct mode (one worker,
API keys and a client model list, so the routes carry their client matcher), writes the RDS
and CDS files for N direct models as the control plane would, and counts Envoy's own CPU
(every thread's time on CPU, /proc/<pid>/task/*/schedstat) over a fixed number of calls:
to the last direct model (the route found last) and to a model that is not direct (every
route tried, then the catch-all). One stand-in upstream answers every gRPC method with an
empty message, as the gateways and as every model's replica.

    python -m bench.route_cost --models 1 100 500 --calls 4000

Run it on a quiet machine: the figure is Envoy's CPU, not latency, but other jobs still
shift it by a few per cent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx

from bench._full_envoy import KEYS
from gateway.edge import parse_edge
from gateway.launch.direct import DirectFiles
from gateway.launch.direct._resources import Model, cluster, route_table
from gateway.launch.envoy import EnvoySettings, envoy_binary, render
from gateway.launch.processes import free_port

EDGE = parse_edge(
    {
        "auth": {
            "api_keys": [
                {"key": KEYS["bench"], "client": "bench", "roles": ["data"]},
                {"key": KEYS["narrow"], "client": "narrow", "roles": ["data"]},
            ]
        },
        "clients": {"narrow": {"models": ["/sax/test/m0"]}},
        "direct": {"generate": True},
    }
)
DEADLINE_S = 60.0


class _Empty(grpc.GenericRpcHandler):
    """Every unary method answers an empty message (a valid GenerateResponse of either)."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: b"",
            request_deserializer=None,
            response_serializer=None,
        )


def _cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of ``pid`` (ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total


def _h2load(url: str, body: Path, calls: int) -> None:
    out = subprocess.run(
        [
            "h2load", "--h1", "-n", str(calls), "-c", "4", "-d", str(body),
            "-H", "content-type: application/json",
            "-H", f"authorization: Bearer {KEYS['bench']}",
            url,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if f"{calls} succeeded" not in out.stdout or " 0 failed" not in out.stdout:
        raise RuntimeError(out.stdout)


def _stat(admin: str, name: str) -> int:
    text = httpx.get(f"{admin}/stats?filter=^{name}$", timeout=10).text
    return sum(int(line.rpartition(":")[2]) for line in text.splitlines() if line)


def _direct_calls(admin: str, model: str) -> int:
    return _stat(admin, f"cluster.direct{model.replace('/', '_')}.upstream_rq_total")


def _goes_direct(url: str, admin: str, model: str) -> bool:
    """A call to ``model`` went to its cluster (its route and cluster are loaded)."""
    before = _direct_calls(admin, model)
    body = {"model": model, "query": "probe"}
    auth = {"authorization": f"Bearer {KEYS['bench']}"}
    answer = httpx.post(url, json=body, headers=auth, timeout=10)
    return answer.status_code == 200 and _direct_calls(admin, model) == before + 1


def measure(models: int, calls: int, upstream: str, work: Path) -> dict[str, float]:
    files = DirectFiles(work / f"direct-{models}")
    files.directory.mkdir()
    port, admin_port = free_port(), free_port()
    settings = EnvoySettings(
        gateway_endpoints=(upstream,),
        listen_port=port,
        admin_port=admin_port,
        route_timeout=DEADLINE_S + 10,
        edge=EDGE,
        concurrency=1,
        direct_dir=str(files.directory),
    )
    config = work / f"envoy-{models}.yaml"
    config.write_text(render(settings, secrets_dir=work / "secrets"))
    direct = [Model(f"/sax/test/m{i}", (upstream,), "") for i in range(models)]
    files.write_clusters([cluster(m, EDGE) for m in direct])
    files.write_routes(route_table(files.read_base(), direct, EDGE, DEADLINE_S))
    envoy = subprocess.Popen(
        [str(envoy_binary()), "-c", str(config), "--concurrency", "1",
         "--log-level", "error", "--disable-hot-restart", "--base-id", str(port)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        url = f"http://127.0.0.1:{port}/generate"
        until = time.monotonic() + 60
        while True:
            try:
                if _goes_direct(url, admin, direct[-1].model_id):
                    break
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > until:
                raise RuntimeError("Envoy did not load the routes")
            time.sleep(0.2)
        out = {}
        last = direct[-1].model_id
        for name, model in (("direct", last), ("gateway", "/sax/test/other")):
            body = work / f"{name}.json"
            body.write_text(json.dumps({"model": model, "query": "one two three"}))
            _h2load(url, body, 200)  # warm: connections, first calls
            sent, cpu = _direct_calls(admin, last), _cpu_ns(envoy.pid)
            _h2load(url, body, calls)
            out[name] = (_cpu_ns(envoy.pid) - cpu) / calls / 1000
            went = _direct_calls(admin, last) - sent
            if went != (calls if name == "direct" else 0):
                raise RuntimeError(f"{went} of {calls} calls to {model} went direct")
        return out
    finally:
        envoy.terminate()
        envoy.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[_Empty()])
    upstream = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for n in args.models:
                    work = Path(tmp) / f"{r}-{n}"
                    work.mkdir()
                    got = measure(n, args.calls, upstream, work)
                    figures = ", ".join(f"{k} {v:.1f} us" for k, v in got.items())
                    print(f"round {r} models {n}: Envoy CPU per call: {figures}", flush=True)
    finally:
        server.stop(None)


if __name__ == "__main__":
    main()
