"""What the tests of deploy/k8s's overlays as pods share (test_k8s_pod.py, test_k8s_gcs_pod.py):
an overlay's objects with the keys Secret docs/deploy.md has the operator create, the local
images that stand for the ones it names, a pod that runs for the length of a test module, and
calls through the Service's port.

    objects = with_keys(render("embedded-cell"))
    with running(deployment(objects), Cluster(objects, IMAGES), workdir) as pod:
        with service_url(pod) as url: ...
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cell.models.test_lm import MODEL_PATH as TEST_LM
from tests._grpc import sync_channel
from tests.container._kube import Cluster, Spec, secret
from tests.container._netns import Netns
from tests.container._pod import Exit, Pod

API_KEY = "sk-pod-7c1e9b2d4f6a8035"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENT = "pod-test"  # the key's client id
# The images the overlays name, and the local ones scripts/build-images made for them.
IMAGES = {
    "sax-gateway:latest": os.environ.get("SAXGW_IMAGE", "sax-gateway:latest"),
    "envoyproxy/envoy:v1.40-latest": os.environ.get("ENVOY_IMAGE", "saxgw-local/envoy:1.40.0"),
}


def with_keys(objects: tuple[Spec, ...]) -> tuple[Spec, ...]:
    """An overlay's objects, and the keys Secret as docs/deploy.md has the operator create it."""
    keys = f"- {{key: {API_KEY}, client: {CLIENT}, roles: [admin, data]}}\n"
    return (*objects, secret("sax-gateway-keys", {"api-keys.yaml": keys}))


def deployment(objects: tuple[Spec, ...]) -> Spec:
    """The Deployment, a copy a test may change."""
    [found] = [o for o in objects if o["kind"] == "Deployment"]
    return copy.deepcopy(found)


def named(pod: Spec, name: str) -> Spec:
    """A container of the pod spec, init containers included."""
    containers: list[Spec] = pod["containers"] + pod.get("initContainers", [])
    [found] = [c for c in containers if c["name"] == name]
    return found


@contextlib.contextmanager
def running(
    deployment: Spec,
    cluster: Cluster,
    workdir: Path,
    network: Callable[[Netns], None] | None = None,
) -> Iterator[Pod]:
    """A pod of ``deployment``, started (``network``: Pod.start's), then deleted whatever
    happened, its containers' last lines printed."""
    pod = Pod(deployment, cluster, workdir)
    try:
        pod.start(network)
        yield pod
    finally:
        print(pod.logs())
        pod.delete()


@contextlib.contextmanager
def service_url(pod: Pod) -> Iterator[str]:
    """The Service's `http` port, forwarded here."""
    with pod.forward(pod.target_port("sax-gateway", "http")) as port:
        yield f"http://127.0.0.1:{port}"


def publish(http: httpx.Client, model: str, overrides: dict[str, str]) -> None:
    """Publishes a TestLM replica through the gateway's admin API and waits until it serves."""
    body = {"model": model, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
    published = http.post("/publish", json={**body, "overrides": overrides})
    assert published.status_code == 200, published.text
    ready = http.post("/wait_for_ready", json={"model": model, "timeout": "60s"})
    assert ready.status_code == 200, ready.text


def grpc_generate(url: str, model: str) -> list[tuple[str, float]]:
    """Generate over gRPC through the Service's port (appProtocol kubernetes.io/h2c: HTTP/2
    without TLS, through Envoy), with the key: the texts and their scores."""
    with sync_channel(url.removeprefix("http://")) as channel:
        request = pb.GenerateRequest(model=model, query="q")
        key = (("authorization", f"Bearer {API_KEY}"),)
        reply = gateway_pb2_grpc.SaxGatewayStub(channel).Generate(request, timeout=30, metadata=key)
    return [(t.text, round(t.score, 6)) for t in reply.texts]


def assert_exited_cleanly(pod: Pod, exits: Mapping[str, Exit]) -> None:
    """What Pod.terminate() returned: every long-running container ran its preStop hook and
    exited 0, none killed (each ended well inside the grace period; SIGKILL comes at its end)."""
    assert {name: (e.code, e.pre_stop_failure) for name, e in exits.items()} == {
        c["name"]: (0, None) for c in pod.long_running
    }
    grace = pod.spec["terminationGracePeriodSeconds"]
    assert max(e.seconds for e in exits.values()) < grace - 5
