"""The header by which a ``/generate`` call finds its direct route (`_listener.MODEL_HEADER`):
Envoy sets it from the body's model, a client's own changes nothing, and no upstream gets it.
A bare Envoy of the stack's binary in direct mode, its files written as the control plane
writes them, and stand-ins that record each call they get: the gateways, and one replica
each of two direct models."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.edge import parse_edge
from gateway.launch.direct import DirectFiles
from gateway.launch.direct._listener import GATEWAY_PATH, MODEL_HEADER
from gateway.launch.direct._resources import SAX_PATH, Model, cluster, route_table
from gateway.launch.envoy import envoy_binary, render
from tests._stacks import loopback_envoy
from tests._wait import wait_until

pytestmark = pytest.mark.e2e

EDGE = parse_edge({"direct": {"generate": True}})
A, B = "/sax/test/a", "/sax/test/b"


class Recorder(grpc.GenericRpcHandler):
    """A gRPC server on a port of its own that answers every unary method with an empty
    message (a valid reply of either Generate) and records each call's method and metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str | bytes]]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[self])
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((str(details.method), dict(context.invocation_metadata() or ())))
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


@dataclass(frozen=True)
class Upstreams:
    gateway: Recorder
    replicas: Mapping[str, Recorder]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Upstreams]]:
    """Envoy's HTTP address, with A and B routed directly, and the stand-ins it calls."""
    recorders = {name: Recorder() for name in ("gateway", A, B)}
    directory = tmp_path / "d"
    directory.mkdir()
    settings = replace(
        loopback_envoy(direct_dir=str(directory), edge=EDGE),
        gateway_endpoints=(recorders["gateway"].address,),
    )
    config = tmp_path / "envoy.json"
    config.write_text(render(settings, secrets_dir=tmp_path / "secrets"))
    files = DirectFiles(directory)
    models = [Model(m, (recorders[m].address,), "") for m in (A, B)]
    files.write_clusters([cluster(m, EDGE) for m in models])
    files.write_routes(route_table(files.read_base(), models, EDGE, 20.0))
    url = f"http://127.0.0.1:{settings.listen_port}"
    argv = [str(envoy_binary()), "-c", str(config), "-l", "error", "--disable-hot-restart"]
    upstreams = Upstreams(recorders["gateway"], {m: recorders[m] for m in (A, B)})
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:

            def routed() -> bool:
                try:
                    httpx.post(f"{url}/generate", json={"model": B, "query": "q"}, timeout=5)
                except httpx.TransportError:
                    return False
                return bool(upstreams.replicas[B].calls)

            wait_until(f"Envoy routes {B} directly", routed)
            for recorder in recorders.values():
                recorder.calls.clear()
            yield url, upstreams
        finally:
            process.terminate()
            process.wait(timeout=30)
            for recorder in recorders.values():
                recorder.server.stop(None)


def _who_got(upstreams: Upstreams) -> list[tuple[str, str, bool]]:
    """Each call recorded since the last look: who got it, its method, and whether it carried
    the model header; then forgets them."""
    out = []
    for name, recorder in (("gateway", upstreams.gateway), *upstreams.replicas.items()):
        out += [(name, method, MODEL_HEADER in meta) for method, meta in recorder.calls]
        recorder.calls.clear()
    return out


def test_a_client_sent_model_header_changes_nothing_and_reaches_no_upstream(
    served: tuple[str, Upstreams],
) -> None:
    url, upstreams = served
    with httpx.Client(base_url=url, timeout=10) as http:
        # Routed by the body's model, as without the header; the replica never sees it.
        for header in (None, B, A, ""):
            headers = {} if header is None else {MODEL_HEADER: header}
            answer = http.post("/generate", json={"model": A, "query": "q"}, headers=headers)
            assert answer.status_code == 200, answer.text
            assert _who_got(upstreams) == [(A, SAX_PATH, False)], header
        # A model not routed directly, or none, goes to a gateway whatever the header names.
        for body in ({"model": "/sax/test/other", "query": "q"}, {"query": "q"}):
            answer = http.post("/generate", json=body, headers={MODEL_HEADER: A})
            assert answer.status_code == 200, answer.text
            assert _who_got(upstreams) == [("gateway", GATEWAY_PATH, False)], body
        # On another path, where Envoy sets no header, a client's own is removed too.
        answer = http.post(f"/v1{A}:generate", json={"query": "q"}, headers={MODEL_HEADER: A})
        assert answer.status_code == 200, answer.text
        assert _who_got(upstreams) == [("gateway", GATEWAY_PATH, False)]
