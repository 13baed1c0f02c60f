"""The compose stack for real: images built locally, a real container engine, every request
through the containerised Envoy, with the API key the stack's config file requires (conftest).
The tests run in file order; the last one stops the stack."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cell.models.test_lm import MODEL_PATH as TEST_LM
from gateway.launch.tuning import ENVOY_SPARE_FILES
from tests._deployment import http_liveness, liveness
from tests._grpc import sync_channel
from tests.container._compose import ROOT, Compose, poll, run_command
from tests.container._kube import LABEL, tail
from tests.container.conftest import API_KEY, AUTH
from tests.e2e._bodies import envoy_error
from tests.e2e._seed import LISTED, MODEL, MODEL_BODY, PUBLISH_BODY, PUBLISHED
from tests.e2e._seed import raw as seed_raw


def _raw(method: str, url: str, body: str, content_type: str | None = None) -> httpx.Response:
    """The seed's curl request (tests/e2e/_seed.py), plus the API key."""
    return seed_raw(method, url, body, content_type, headers=AUTH)


def _active(http: httpx.Client, model: str, replicas: int) -> dict[str, object] | None:
    body = dict(http.get("/listcell", params={"model": model}).json())
    return body if body.get("active_replicas") == replicas else None


@contextmanager
def _published(http: httpx.Client, model: str, overrides: dict[str, str]) -> Iterator[str]:
    body = {
        "model": model,
        "model_path": TEST_LM,
        "checkpoint": "None",
        "replicas": 1,
        "overrides": overrides,
    }
    response = http.post("/publish", json=body)
    assert response.status_code == 200, response.text
    ready = http.post("/wait_for_ready", json={"model": model, "timeout": "60s"})
    assert ready.status_code == 200, ready.text
    yield model


Probe = Callable[[], httpx.Response | None]


def _answers(status: int, send: Callable[[], httpx.Response]) -> Probe:
    """A probe for poll(): the response once ``send()`` gets ``status``."""

    def probe() -> httpx.Response | None:
        response = send()
        return response if response.status_code == status else None

    return probe


def _sse(response: httpx.Response) -> Iterator[dict[str, object]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def test_seed_walkthrough(compose: Compose) -> None:
    url = compose.http_url
    root = httpx.get(url + "/")
    assert root.status_code == 200
    assert root.json()["message"] == "HTTP Server for SAX Client"

    publish = _raw("POST", f"{url}/publish", PUBLISH_BODY)
    assert publish.status_code == 200, publish.text
    assert publish.json() == PUBLISHED
    with httpx.Client(base_url=url, timeout=60, headers=AUTH) as http:
        assert poll(lambda: _active(http, MODEL, 1), "lm2b to load") == LISTED
    listcell = _raw("GET", f"{url}/listcell", MODEL_BODY)
    assert listcell.status_code == 200, listcell.text
    assert listcell.json()["active_replicas"] == 1

    payload = json.dumps({"model": "/sax/test/lm2b", "query": "Q: Who is Harry Potter's mom? A: "})
    generate = _raw("POST", f"{url}/generate", payload, "application/json")
    assert generate.status_code == 200, generate.text
    texts = generate.json()["texts"]
    assert texts and all(set(t) == {"text", "score"} and t["text"] for t in texts)

    unpublish = _raw("POST", f"{url}/unpublish", MODEL_BODY)
    assert unpublish.status_code == 200, unpublish.text
    assert unpublish.json() == {"model": "/sax/test/lm2b"}
    gone = httpx.get(f"{url}/listcell", params={"model": "/sax/test/lm2b"}, headers=AUTH)
    assert gone.status_code == 404


def test_a_cells_admin_acl_is_set_through_the_gateway(http: httpx.Client) -> None:
    # The gateway writes the cell's config.proto for it, on the cell's volume, which it had
    # mounted read-only: the call was a 500 (INTERNAL, "could not save the config"). The ACL
    # set is the one the cell has (none), so no later call is held to it.
    response = http.post("/setacl", json={"name": "/sax/test", "acl": ""})
    assert (response.status_code, response.json()) == (
        200,
        {"name": "/sax/test", "acl": "", "method": ""},
    )
    acl = http.get("/getacl", params={"name": "/sax/test"})
    assert (acl.status_code, acl.json()["acl"]) == (200, "")


def test_native_grpc_call_through_envoy(compose: Compose, http: httpx.Client) -> None:
    with (
        _published(http, "/sax/test/grpc", {"text": "over h2c"}) as model,
        sync_channel(f"127.0.0.1:{compose.ports.http}") as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        key = (("authorization", f"Bearer {API_KEY}"),)
        reply = stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=30, metadata=key)
        assert [(t.text, round(t.score, 6)) for t in reply.texts] == [("over h2c", -0.2)]
        absent = pb.GenerateRequest(model="/sax/test/absent", query="q")
        with pytest.raises(grpc.RpcError) as not_found:
            stub.Generate(absent, timeout=30, metadata=key)
        assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as no_key:
            stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=30)
        assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sse_stream_through_envoy(http: httpx.Client) -> None:
    with (
        _published(http, "/sax/test/sse", {"text": "one two three", "delay_ms": "50"}) as model,
        http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = list(_sse(response))
    assert [e["deltas"][0]["text"] for e in events[:-1]] == ["one", " two", " three"]  # type: ignore[index]
    assert events[-1] == {
        "deltas": [],
        "done": True,
        "texts": [{"text": "one two three", "score": pytest.approx(-0.3)}],
    }


def test_the_config_files_api_key_is_required_through_envoy(
    compose: Compose, http: httpx.Client
) -> None:
    with _published(http, "/sax/test/keyed", {"text": "with a key"}) as model:
        body = {"model": model, "query": "q"}
        anonymous = httpx.post(f"{compose.http_url}/generate", json=body, timeout=30)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json() == envoy_error(anonymous, 16, "Client authentication failed.")
        wrong = {"Authorization": "Bearer sk-not-the-key-000000"}
        refused = httpx.post(f"{compose.http_url}/generate", json=body, headers=wrong, timeout=30)
        assert refused.status_code == 401, refused.text
        keyed = http.post("/generate", json=body)
        assert keyed.status_code == 200, keyed.text
        assert keyed.json() == {"texts": [{"text": "with a key", "score": pytest.approx(-0.3)}]}
        # The OpenAI-compatible API: OpenAI's envelope, which the SDKs read.
        models = httpx.get(f"{compose.http_url}/v1/models", timeout=30)
        assert models.status_code == 401
        assert models.json() == {
            "error": {
                "message": "Client authentication failed.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        assert model in [m["id"] for m in http.get("/v1/models").json()["data"]]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(compose: Compose) -> Samples:
    """The ops service's /metrics, parsed (a malformed exposition raises)."""
    response = httpx.get(f"http://127.0.0.1:{compose.ports.ops}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_the_ops_service_scrapes_the_gateways_calls_and_envoy(
    compose: Compose, http: httpx.Client
) -> None:
    ok = {"grpc_method": "Generate", "grpc_code": "OK", "client": "container-test"}
    requests = "saxgw_requests_total"
    # Counted since the stack started (earlier tests made keyed calls too): read the count first.
    before = poll(lambda: _scrape(compose), "the ops service to answer")
    calls = 3
    with _published(http, "/sax/test/metered", {"text": "counted"}) as model:
        for _ in range(calls):
            reply = http.post("/generate", json={"model": model, "query": "q"})
            assert reply.status_code == 200, reply.text
        # Refused by Envoy: never reaches the gateway, so never counted there.
        anonymous = httpx.post(f"{compose.http_url}/generate", json={"model": model}, timeout=30)
        assert anonymous.status_code == 401
        generate = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": model}
        duration = "gen_ai_server_request_duration_seconds_count"
        # The gateway writes its counts out once a second: scrape until the calls show.
        samples = poll(
            lambda: (
                s
                if _value(s := _scrape(compose), duration, **generate, error_type="") >= calls
                and _value(s, requests, **ok) - _value(before, requests, **ok) >= calls
                else None
            ),
            "the calls to show in the scrape",
            timeout=30,
        )
    # A fresh model: exactly the keyed calls, under the client id of the config's API key.
    assert _value(samples, duration, **generate, error_type="") == calls
    assert _value(samples, requests, **ok) - _value(before, requests, **ok) >= calls
    assert _value(samples, "saxgw_model_replicas", gen_ai_request_model=model) == 1
    assert _value(samples, requests, **{**ok, "client": "anonymous"}) == 0
    # Envoy's own series, read by ops from its loopback-only admin interface.
    assert _value(samples, "saxgw_envoy_up") == 1
    assert _value(samples, "envoy_server_live") == 1
    upstream = "envoy_cluster_upstream_rq_total"
    assert _value(samples, upstream, envoy_cluster_name="gateway_grpc") >= calls


def test_the_pods_liveness_probes_run_in_the_images(compose: Compose) -> None:
    # deploy/k8s's liveness probes, in the images its pods run: the commands and what they need
    # (python and the gateway package; bash, and run-envoy.sh as envoy-config writes it).
    ports = compose.ports
    for service, where in (
        ("gateway", {"127.0.0.1:50051": f"127.0.0.1:{ports.gateway}"}),
        ("envoy", {"9901": str(ports.envoy_admin)}),
    ):
        command, timeout = liveness(service, where)
        # `docker exec` fails (AssertionError) unless the probe exits 0.
        compose.docker("exec", compose.container(service), *command, timeout=timeout + 10)
    # The ops container's is kubelet's own httpGet, on the port the image's ops server serves.
    path, _, timeout = http_liveness("ops")
    answer = httpx.get(f"http://127.0.0.1:{ports.ops}{path}", timeout=timeout)
    assert (answer.status_code, answer.text) == (200, "ok\n")


def test_every_service_runs_read_only_with_no_privileges(compose: Compose) -> None:
    # What a security-minded platform enforces, and the pods declare: a read-only root with
    # a tmpfs /tmp, no capabilities (not even in the bounding set), no privilege escalation.
    # Compose's services had the engine's defaults: a writable root, 14 capabilities.
    check = (
        "grep -E '^(CapBnd|NoNewPrivs):' /proc/1/status; touch /probe 2>&1;"
        " touch /tmp/probe && echo /tmp is writable"
    )
    project = f"label=com.docker.compose.project={compose.project}"
    service = '{{.Label "com.docker.compose.service"}} {{.ID}}'
    running = compose.docker("ps", "--filter", project, "--format", service).split()
    ids = dict(zip(running[::2], running[1::2], strict=True))  # one `docker-compose ps` is ~1 s
    assert set(ids) == {"cell", "gateway", "envoy", "ops"}
    for service, container in ids.items():
        seen = compose.docker("exec", container, "sh", "-c", check).split("\n")
        assert seen[:2] == ["CapBnd:\t0000000000000000", "NoNewPrivs:\t1"], (service, seen)
        assert "Read-only file system" in seen[2], (service, seen)
        assert seen[3:] == ["/tmp is writable", ""], (service, seen)
    job = compose.docker("inspect", compose.container("envoy-config"), "--format",
                         "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} "
                         "{{.HostConfig.SecurityOpt}}")  # fmt: skip
    assert job.strip() == "true [ALL] [no-new-privileges:true]"


# What a security-minded platform enforces on every container: a read-only root with a tmpfs
# for /tmp (as the pods' emptyDir), no capabilities, no privilege escalation.
RESTRICTED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt",
              "no-new-privileges")  # fmt: skip


def test_the_image_runs_as_an_arbitrary_user_in_group_0(compose: Compose) -> None:
    # OpenShift's restricted SCC runs every container as an arbitrary UID in group 0, and a
    # new volume (named or anonymous) starts as a copy of the image's folder at its mount
    # point, owner and mode included: /etc/envoy (envoy-config's output) and /data (the cell's
    # SAX_ROOT) were the image user's alone, and both refused to start (Permission denied).
    image = compose.env.get("SAXGW_IMAGE", "sax-gateway:latest")
    run = ["run", "--label", f"{LABEL}=arbitrary-uid", "--network", "none", *RESTRICTED]
    run += ["--user", "1000680000:0"]
    wrote = compose.docker(
        *run, "--rm", "--volume", "/etc/envoy", image,
        "envoy-config", "--gateway", "127.0.0.1:50051", "--out", "/etc/envoy",
    )  # fmt: skip
    assert wrote.startswith("wrote /etc/envoy/envoy.yaml"), wrote
    cell = compose.docker(
        *run, "--detach", "--volume", "/data", "--entrypoint", "python", image,
        "-m", "gateway.cell", "--sax-root", "/data/sax-root", "--fs-root", "/data/fs-root",
        "--cell", "/sax/test", "--host", "127.0.0.1", "--admin-port", "10000",
        "--model-servers", "1", "--model-server-ports", "10001",
    ).strip()  # fmt: skip
    try:

        def started() -> str | None:
            logs = tail("cell", cell, 20)
            running = compose.docker("inspect", "-f", "{{.State.Running}}", cell).strip()
            return logs if "model-server 127.0.0.1:10001" in logs or running != "true" else None

        logs = poll(started, "the cell to start or exit", timeout=60)
        assert "model-server 127.0.0.1:10001" in logs, logs
        assert "Permission denied" not in logs, logs
    finally:
        compose.docker("rm", "--force", "--volumes", cell)
    # Compose's metrics volume, a tmpfs whose owner and mode are its options: the gateways
    # write their files there and ops reads them. It was UID 10001's alone (0700): as any
    # other UID every gateway's metrics were lost and each scrape failed 500.
    metrics = f"{compose.project}_metrics:/run/saxgw/metrics"
    listed = compose.docker(
        *run, "--rm", "--volume", metrics, "--entrypoint", "sh", image, "-c",
        "cd /run/saxgw/metrics && touch probe && ls && rm probe",
    )  # fmt: skip
    assert "probe" in listed.split(), listed


# A client of Envoy's that opens connections, run in Envoy's network namespace: how many it
# opened, then whether Envoy's admin still answers while they are open.
_CONNECTIONS = """
import socket, sys, time, urllib.request
ready = lambda: urllib.request.urlopen("http://127.0.0.1:9901/ready", timeout=3).status
for _ in range(100):
    try:
        ready(); break
    except OSError:
        time.sleep(0.1)
held = [socket.create_connection(("127.0.0.1", 8888), timeout=3) for _ in range(int(sys.argv[1]))]
time.sleep(0.5)
print(len(held), ready())
"""


def test_the_tpu_gateway_is_given_the_hosts_key_or_none(compose: Compose) -> None:
    # Without a key on the host, the tpu profile's gateway had GOOGLE_APPLICATION_CREDENTIALS
    # naming a placeholder (/dev/null, mounted), which google-auth read as the key: it never
    # asked the VM's metadata server (the service account), and the gateway exited 2 and was
    # restarted for ever. The variable now reaches it only when the host sets one.
    def tpu_gateway(**key: str) -> dict[str, Any]:
        env = {k: v for k, v in compose.env.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
        command = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "tpu"]
        out = run_command([*command, "config"], {**env, "SAX_ROOT": "gs://b/r", **key}, 120)
        return dict(yaml.safe_load(out)["services"]["gateway-tpu"])

    keyless = tpu_gateway()
    assert keyless["environment"] == {"GOOGLE_APPLICATION_CREDENTIALS": None}  # not set
    keyed = tpu_gateway(GOOGLE_APPLICATION_CREDENTIALS="/keys/sa.json")
    assert keyed["environment"] == {"GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json"}
    assert "/keys/sa.json:/keys/sa.json:ro" in keyed["volumes"]


def test_envoy_holds_the_connections_its_config_admits(compose: Compose) -> None:
    # Envoy admits limits.max_connections (20,000 by default) clients; each is a descriptor,
    # and beyond its open-file limit Envoy 1.40 crashed (SIGSEGV after `socket(2) failed, got
    # error: Too many open files`), cutting every call. envoy-config rendered the 20,000 into
    # a container whose limit was the engine's: 20,000 on this host, none left for Envoy's own
    # sockets (Kubernetes has no setting for it, and Compose's cannot raise it past the engine's).
    envoy = compose.container("envoy")
    envoys = 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = envoy ] && cat $p/limits; done'
    limits = compose.docker("exec", envoy, "sh", "-c", envoys)
    [hard] = [line.split()[4] for line in limits.splitlines() if line.startswith("Max open files")]
    config = compose.docker("exec", envoy, "cat", "/etc/envoy/envoy.yaml")
    [admitted] = re.findall(r"max_active_downstream_connections: (\d+)", config)
    assert int(hard) >= int(admitted) + ENVOY_SPARE_FILES, (hard, admitted)
    # And where the engine's limit is all there is (a pod's containers share the runtime's),
    # envoy-config sizes Envoy's connection limit to it, as `saxgw up` does for its own Envoy:
    # 300 clients of an Envoy that may open 256 files, and its admin still answers.
    image = compose.env.get("SAXGW_IMAGE", "sax-gateway:latest")
    envoy_image = compose.env.get("ENVOY_IMAGE", "saxgw-local/envoy:1.40.0")
    few = ("--label", f"{LABEL}=open-files", "--ulimit", "nofile=256:256")
    volume = compose.docker("volume", "create", *few[:2]).strip()
    small = ""
    try:
        out = f"{volume}:/etc/envoy"
        compose.docker(
            "run", "--rm", *few, "--network", "none", "-v", out, image,
            "envoy-config", "--gateway", "127.0.0.1:50051", "--out", "/etc/envoy",
        )  # fmt: skip
        small = compose.docker(
            "run", "--detach", *few, "--network", "none", "--user", "10001:10001",
            "-v", f"{out}:ro", envoy_image, "bash", "/etc/envoy/run-envoy.sh", "9901", "20",
            "envoy", "-c", "/etc/envoy/envoy.yaml", "--disable-hot-restart",
        ).strip()  # fmt: skip
        held = compose.docker(
            "run", "--rm", "--network", f"container:{small}", "--entrypoint", "python",
            image, "-c", _CONNECTIONS, "300",
        )  # fmt: skip
        assert held.split() == ["300", "200"], tail("envoy", small, 5)
        assert compose.docker("inspect", "-f", "{{.State.Running}}", small).strip() == "true"
    finally:
        if small:
            compose.docker("rm", "--force", small)
        compose.docker("volume", "rm", volume)


def test_a_gateway_that_dies_is_started_again(compose: Compose, http: httpx.Client) -> None:
    # Compose restarted nothing: a crashed gateway (or Envoy aborting a hung thread) stayed
    # down until someone ran `docker compose up` again. Killed from the host, as the OOM killer
    # would (a `docker kill` counts as a stop, which no restart policy undoes).
    gateway = compose.container("gateway")
    restarts = int(compose.docker("inspect", "-f", "{{.RestartCount}}", gateway))
    pid = int(compose.docker("inspect", "-f", "{{.State.Pid}}", gateway))
    os.kill(pid, signal.SIGKILL)
    poll(
        lambda: (
            int(compose.docker("inspect", "-f", "{{.RestartCount}}", gateway)) > restarts or None
        ),
        "the gateway's container to be restarted",
        timeout=60,
    )
    listed = poll(_answers(200, lambda: http.get("/listcells")), "the gateway to answer again")
    assert listed.json() == {"cells": ["/sax/test"]}


def test_killed_cell_container_comes_back_with_its_models(
    compose: Compose, http: httpx.Client
) -> None:
    with _published(http, "/sax/test/durable", {"text": "still here"}) as model:
        compose.docker("kill", compose.container("cell"))  # SIGKILL: no goodbye
        assert compose.state("cell")[0] is False
        compose.run("start", "cell")
        assert poll(lambda: _active(http, model, 1), "the model to be served again")
        generate = poll(
            _answers(200, lambda: http.post("/generate", json={"model": model, "query": "q"})),
            "generate to answer again",
        )
        assert generate.json() == {"texts": [{"text": "still here", "score": -0.2}]}


def test_sigterm_drains_envoy_and_the_gateway_and_everything_exits_0(
    compose: Compose, http: httpx.Client
) -> None:
    overrides = {"text": "a b c d e f g h", "delay_ms": "600"}  # a stream of about 5 s
    with _published(http, "/sax/test/drain", overrides) as model:
        events: list[dict[str, object]] = []
        statuses: list[int] = []
        first = threading.Event()

        def stream() -> None:
            with httpx.stream(
                "POST",
                f"{compose.http_url}/generate_stream",
                json={"model": model, "query": "q"},
                headers=AUTH,
                timeout=60,
            ) as response:
                for event in _sse(response):
                    events.append(event)
                    first.set()

        # The gateway's own health, watched directly (it listens on loopback, host network).
        channel = sync_channel(f"127.0.0.1:{compose.ports.gateway}")
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="saxgateway.v1.SaxGateway")
        )

        def watcher() -> None:
            try:
                for reply in watch:
                    statuses.append(reply.status)
                    if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        watch.cancel()
            except grpc.RpcError:
                pass

        envoy, gateway = compose.container("envoy"), compose.container("gateway")  # ~1 s each
        threads = [threading.Thread(target=stream), threading.Thread(target=watcher)]
        for thread in threads:
            thread.start()
        assert first.wait(30), "the stream never started"
        # The watch's first reply (the status before SIGTERM) can lag on a loaded machine,
        # and so can SERVING: the previous test restarted the cell, and a probe of its admin
        # that timed out under load (5 s) left the gateway NOT_SERVING until the next one.
        serving = health_pb2.HealthCheckResponse.SERVING
        poll(lambda: serving in statuses or None, "the gateway's health to be SERVING", 30)
        compose.docker("kill", "--signal", "TERM", envoy, gateway)

        # Envoy drains: /healthz fails at once (load balancers stop sending), every response
        # closes its connection, and the open stream goes on.
        healthz = poll(
            _answers(503, lambda: httpx.get(f"{compose.http_url}/healthz")),
            "/healthz to fail",
            timeout=10,
        )
        assert healthz.headers["connection"] == "close"
        assert not events[-1].get("done"), "the stream should still be open"
        for thread in threads:
            thread.join(timeout=30)
        channel.close()
    # (no unpublish: the stack is gone; `down --volumes` drops the state)

    # SERVING until the SIGTERM, then NOT_SERVING: the gateway leaves Envoy's rotation.
    assert statuses[-2:] == [serving, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert events[-1] == {
        "deltas": [],
        "done": True,
        "texts": [{"text": "a b c d e f g h", "score": -0.8}],
    }
    assert len(events) == 9  # every token, then the final status
    for service in ("envoy", "gateway"):
        poll(lambda s=service: not compose.state(s)[0] or None, f"{service} to exit", 40)  # type: ignore[misc]
        assert compose.state(service) == (False, 0), service
    compose.run("stop", "--timeout", "30", "cell")
    assert compose.state("cell") == (False, 0)
    assert compose.state("envoy-config") == (False, 0)
