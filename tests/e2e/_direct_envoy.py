"""A bare Envoy of the stack's binary in direct mode, its files written as the control plane
writes them, in front of stand-ins that record each call they get: the gateways, and one
replica each of the direct models."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import httpx

from gateway.edge import parse_edge
from gateway.launch.direct import DirectFiles
from gateway.launch.direct._resources import Model, cluster, route_table
from gateway.launch.envoy import envoy_binary, render
from tests._stacks import loopback_envoy
from tests._wait import wait_until

EDGE = parse_edge({"direct": {"generate": True}})


class Recorder(grpc.GenericRpcHandler):
    """A gRPC server on a port of its own that answers every unary method with an empty
    message (a valid reply of either Generate) and records each call's method and metadata;
    first, it fails a call with each of ``failures`` in turn (code, message)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str | bytes]]] = []
        self.failures: list[tuple[grpc.StatusCode, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[self])
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((str(details.method), dict(context.invocation_metadata() or ())))
            if self.failures:
                code, message = self.failures.pop(0)
                context.abort(code, message)
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


@contextmanager
def direct_envoy(
    tmp_path: Path, gateway: Recorder, replicas: Mapping[str, Recorder]
) -> Iterator[str]:
    """Envoy's HTTP address, each model of ``replicas`` routed directly to its stand-in and
    every other call to ``gateway``; ready once a call to the last model reached it (the calls
    recorded until then are forgotten)."""
    directory = tmp_path / "d"
    directory.mkdir()
    settings = replace(
        loopback_envoy(direct_dir=str(directory), edge=EDGE),
        gateway_endpoints=(gateway.address,),
    )
    config = tmp_path / "envoy.json"
    config.write_text(render(settings, secrets_dir=tmp_path / "secrets"))
    files = DirectFiles(directory)
    models = [Model(m, (recorder.address,), "") for m, recorder in replicas.items()]
    files.write_clusters([cluster(m, EDGE) for m in models])
    files.write_routes(route_table(files.read_base(), models, EDGE, 20.0))
    url = f"http://127.0.0.1:{settings.listen_port}"
    argv = [str(envoy_binary()), "-c", str(config), "-l", "error", "--disable-hot-restart"]
    last, recorders = models[-1].model_id, (gateway, *replicas.values())
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:

            def routed() -> bool:
                try:
                    httpx.post(f"{url}/generate", json={"model": last, "query": "q"}, timeout=5)
                except httpx.TransportError:
                    return False
                return bool(replicas[last].calls)

            wait_until(f"Envoy routes {last} directly", routed)
            for recorder in recorders:
                recorder.calls.clear()
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
            for recorder in recorders:
                recorder.server.stop(None)
