"""deploy/k8s's embedded-cell overlay as a pod: rendered by a real kustomize, its containers run
as kubelet runs them (tests/container/_pod.py) from the images container-test built, with their
command, args, env, mounts, users, probes and hooks as written; then calls through the Service's
port, then the pod deleted. The tests run in file order; the last one deletes the pod."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._deployment import render
from tests.container._compose import poll
from tests.container._kube import (
    LABEL,
    POD_IP,
    Cluster,
    NotEmulated,
    PodFailed,
    Spec,
    docker,
)
from tests.container._overlays import (
    AUTH,
    CLIENT,
    IMAGES,
    assert_exited_cleanly,
    deployment,
    grpc_generate,
    named,
    publish,
    running,
    service_url,
    with_keys,
)
from tests.container._pod import Pod


def _objects() -> tuple[Spec, ...]:
    return with_keys(render("embedded-cell"))


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    objects = _objects()
    with running(
        deployment(objects), Cluster(objects, IMAGES), tmp_path_factory.mktemp("pod")
    ) as pod:
        yield pod


@pytest.fixture(scope="module")
def url(pod: Pod) -> Iterator[str]:
    with service_url(pod) as url:
        yield url


def _container(pod: Pod, name: str) -> Spec:
    return named(pod.spec, name)


def _flag(pod: Pod, container: str, flag: str) -> int:
    args: list[str] = _container(pod, container)["args"]
    return int(args[args.index(flag) + 1])


def _events(response: httpx.Response) -> Iterator[dict[str, object]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


# What the kubelet-lite cannot do, or a cluster would refuse: each fails before anything runs.
REFUSED: dict[str, tuple[type[AssertionError], Callable[[Spec], None]]] = {
    "hostNetwork": (NotEmulated, lambda pod: pod.update(hostNetwork=True)),
    "startupProbe": (NotEmulated, lambda pod: named(pod, "envoy").update(startupProbe={})),
    "envFrom": (NotEmulated, lambda pod: named(pod, "gateway").update(envFrom=[])),
    "httpGet: host": (
        NotEmulated,
        lambda pod: named(pod, "ops")["livenessProbe"]["httpGet"].update(host="127.0.0.1"),
    ),
    "secret sax-gateway-keys not found": (
        PodFailed,
        lambda pod: None,  # the Secret is not created (below)
    ),
}


@pytest.mark.parametrize("refusal", REFUSED)
def test_what_the_kubelet_lite_cannot_run_fails_before_anything_runs(
    refusal: str, tmp_path: Path
) -> None:
    error, change = REFUSED[refusal]
    objects = _objects()
    if error is PodFailed:  # a Secret not created
        objects = tuple(o for o in objects if o["kind"] != "Secret")
    refused = deployment(objects)
    change(refused["spec"]["template"]["spec"])
    pods: list[Pod] = []
    try:
        with pytest.raises(error, match=refusal):
            pods.append(Pod(refused, Cluster(objects, IMAGES), tmp_path))
            pods[0].start()
        for pod in pods:  # not even its sandbox
            assert docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}={pod.name}") == ""
    finally:
        for pod in pods:
            pod.delete()


def test_the_pod_gets_ready_and_only_the_services_ports_reach_it(pod: Pod) -> None:
    print(f"Ready {pod.wait_ready(90):.1f} s after its containers started")
    for service, name in (("sax-gateway", "http"), ("sax-gateway-metrics", "metrics")):
        pod.net.connect(POD_IP, pod.target_port(service, name), 5).close()
    # The rest listen on the pod's loopback (deploy/k8s/base/networkpolicy.yaml says so).
    private = {
        "the gateway": _flag(pod, "gateway", "--port"),
        "Envoy's admin": _flag(pod, "envoy-config", "--admin-port"),
        "the cell's admin": _flag(pod, "cell", "--admin-port"),
        "the model server": _flag(pod, "cell", "--model-server-ports"),
    }
    for what, port in private.items():
        with pytest.raises(ConnectionRefusedError):
            pod.net.connect(POD_IP, port, 5)
        pod.net.connect("127.0.0.1", port, 5).close()  # and it does listen there
        print(f"{what} listens on the pod's 127.0.0.1:{port} only")


def test_generate_and_a_stream_through_the_services_port(pod: Pod, url: str) -> None:
    model = "/sax/test/pod"
    anonymous = httpx.post(f"{url}/generate", json={"model": model, "query": "q"}, timeout=30)
    assert anonymous.status_code == 401  # the ConfigMap's config requires the Secret's keys
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        publish(http, model, {"text": "from the pod"})
        generate = http.post("/generate", json={"model": model, "query": "q"})
        assert generate.status_code == 200, generate.text
        assert generate.json() == {
            "texts": [{"text": "from the pod", "score": pytest.approx(-0.3)}]
        }
        body = {"model": model, "query": "q"}
        with http.stream("POST", "/generate_stream", json=body) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"] == "text/event-stream"
            events = list(_events(stream))
    tokens = [("from", -0.1), (" the", -0.2), (" pod", -0.3)]
    assert [e["deltas"] for e in events[:-1]] == [
        [{"index": 0, "backtrack": 0, "text": text, "score": pytest.approx(score)}]
        for text, score in tokens
    ]
    assert events[-1] == {
        "deltas": [],
        "done": True,
        "texts": [{"text": "from the pod", "score": pytest.approx(-0.3)}],
    }
    assert grpc_generate(url, model) == [("from the pod", -0.3)]
    # The cell's admin ACL is written to its config.proto by the gateway, on the volume it
    # shares with the cell (read-only, this was a 500); set to the one it has, none.
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        acl = http.post("/setacl", json={"name": "/sax/test", "acl": ""})
        assert (acl.status_code, acl.json()) == (
            200,
            {"name": "/sax/test", "acl": "", "method": ""},
        )

    # The scrape port: the ops container adds up the gateway's files in the shared emptyDir,
    # which it writes once a second. Two calls: the JSON one and the gRPC one.
    ok = {"client": CLIENT, "grpc_method": "Generate", "grpc_code": "OK"}
    with pod.forward(pod.target_port("sax-gateway-metrics", "metrics")) as metrics:

        def counted() -> float | None:
            text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
            found = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "saxgw_requests_total" and sample.labels.items() >= ok.items()
            ]
            return sum(found) if sum(found) >= 2 else None

        assert poll(counted, "the calls to show in the pod's scrape", timeout=30) == 2


def test_every_probe_passes_as_written(pod: Pod) -> None:
    probes = pod.probes()
    assert set(probes) == {
        "gateway livenessProbe",
        "envoy livenessProbe",
        "ops readinessProbe",
        "ops livenessProbe",
        "cell livenessProbe",
    }
    # The liveness probes start after their initialDelaySeconds (10 s at most).
    poll(lambda: all(p.results for p in probes.values()) or None, "every probe to run", 40)
    for name, probe in probes.items():
        assert probe.passing, (name, probe.results)
        if name.endswith("livenessProbe"):
            assert probe.failures() == [], name
            assert probe.restarts == 0, name
    assert pod.exited() == {}


def test_the_cells_liveness_probe_fails_while_the_cell_hangs(pod: Pod) -> None:
    # The cell restarts a server that exits, not one that hangs; with no liveness probe its
    # container stayed hung. Every process of the cell stopped (SIGSTOP), the probe as kubelet
    # runs it (exec in the container, its timeout) fails; continued, it passes again.
    cell = _container(pod, "cell")
    probe = cell["livenessProbe"]
    pids = [int(p) for p in docker("top", pod.container_id("cell"), "-o", "pid").split()[1:]]
    assert pids, "the cell runs no process"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        hung = pod.check(cell, probe, timeout=probe["timeoutSeconds"])
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert hung is not None and "no answer within 2 s" in hung, hung
    assert pod.check(cell, probe, timeout=probe["timeoutSeconds"]) is None


def test_deleting_the_pod_drains_a_stream_and_every_container_exits_0_in_time(
    pod: Pod, url: str
) -> None:
    model = "/sax/test/drain"
    events: list[dict[str, object]] = []
    first = threading.Event()
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        publish(http, model, {"text": "a b c d e f", "delay_ms": "500"})  # a stream of 3 s

        def stream() -> None:
            body = {"model": model, "query": "q"}
            with http.stream("POST", "/generate_stream", json=body) as response:
                for event in _events(response):
                    events.append(event)
                    first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(30), "the stream never started"
        exits = {}
        deleting = threading.Thread(target=lambda: exits.update(pod.terminate()))
        deleting.start()
        # The readiness probe (the ops server's /readyz, as Envoy's /healthz) fails at once:
        # the pod leaves the Service's endpoints.
        ops = _container(pod, "ops")
        poll(
            lambda: pod.check(ops, ops["readinessProbe"], timeout=1) or None,
            "the pod's readiness probe to fail",
            timeout=5,
        )
        reader.join(30)
        deleting.join(60)

    print({name: f"exit {e.code} after {e.seconds:.1f} s" for name, e in exits.items()})
    assert len(events) == 7, events  # every token, then the final status
    assert events[-1] == {
        "deltas": [],
        "done": True,
        "texts": [{"text": "a b c d e f", "score": pytest.approx(-0.6)}],
    }
    assert_exited_cleanly(pod, exits)
    pre_stop = _container(pod, "gateway")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert exits["gateway"].seconds >= pre_stop
    # The cell served the gateway's calls to their end: it stopped after the gateway.
    assert exits["cell"].seconds > exits["gateway"].seconds
