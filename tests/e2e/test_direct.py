"""Direct mode (``direct: {generate: true}``): Envoy sends ``POST /generate`` straight to a
model's replicas when the gateway would not change what the call means, and every other call
through a gateway as before. One stack, started from a config file as `saxgw up --config`
starts it: API keys, a client limited to some models, one with calls in flight of its own,
an ACL group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import yaml
from saxml.protobuf.admin_pb2 import Location

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.direct._plane import CLUSTERS_LINGER_S
from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from tests._stacks import (
    FORWARDED,
    cell_settings,
    envoy_stat,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
    stopped,
)
from tests.e2e._access_log import access_log_lines
from tests.e2e._bodies import gateway_error
from tests.e2e._published import TEST_LM, publish_body

pytestmark = pytest.mark.e2e

OPS = {"Authorization": "Bearer sk-direct-ops-5b0e7c2a91d4"}
TEAM = {"Authorization": "Bearer sk-direct-team-3e8f1a6c0b27"}
NARROW = {"Authorization": "Bearer sk-direct-narrow-7d2c9e4b1a05"}
CAPPED = {"Authorization": "Bearer sk-direct-capped-0a6b3f8e2c91"}
CONFIG = {
    "auth": {
        "api_keys": [
            {"key": OPS["Authorization"][7:], "client": "ops", "roles": ["admin", "data"]},
            {"key": TEAM["Authorization"][7:], "client": "team", "roles": ["data"]},
            {"key": NARROW["Authorization"][7:], "client": "narrow", "roles": ["data"]},
            {"key": CAPPED["Authorization"][7:], "client": "capped", "roles": ["data"]},
        ],
        "groups": {"readers": ["ops"]},
        "acl_cache_seconds": 0,
    },
    "clients": {
        "narrow": {"models": ["/sax/test/elsewhere-*"]},
        "capped": {"max_concurrent": 4},
    },
    "direct": {"generate": True},
}
#: Seconds within which a change at the admin reaches Envoy's routes (the control plane lists
#: the cells every 0.5 s; the admin's own cycle here is 0.3 s).
SETTLE_S = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("direct")
    config_file = base / "saxgw.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG))
    settings = StackSettings(
        gateway=gateway_settings(base, config_file=str(config_file)),
        cell=cell_settings(base, servers=2, poll_interval=0.3, server_dead_after=2),
        gateway_ports=(free_port(),),
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "direct stack") as running:
        yield running


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.http_url, timeout=30) as client:
        yield client


def _direct_calls(stack: Stack, model: str) -> int:
    """Calls Envoy sent to ``model``'s replicas itself (its cluster's stats name)."""
    return envoy_stat(stack, f"cluster.direct{model.replace('/', '_')}.upstream_rq_total")


def _generate(
    http: httpx.Client, body: Mapping[str, object], who: Mapping[str, str]
) -> httpx.Response:
    return http.post("/generate", json=body, headers=who)


def _until(what: str, done: Callable[[], bool], within: float = SETTLE_S) -> float:
    """Seconds until ``done()`` holds; fails the test after ``within``."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > within:
            pytest.fail(f"not within {within:g} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def _publish(http: httpx.Client, model: str, replicas: int = 1) -> None:
    published = http.post("/publish", json=publish_body(model, TEST_LM, replicas), headers=OPS)
    assert published.status_code == 200, published.text
    wait = {"model": model, "num_replicas": replicas}
    ready = http.post("/wait_for_ready", json=wait, headers=OPS)
    assert ready.status_code == 200, ready.text


def _goes_direct(stack: Stack, http: httpx.Client, model: str) -> Callable[[], bool]:
    def check() -> bool:
        before = _direct_calls(stack, model)
        answered = _generate(http, {"model": model, "query": "probe"}, TEAM)
        return answered.status_code == 200 and _direct_calls(stack, model) == before + 1

    return check


def _addresses(http: httpx.Client, model: str) -> list[str]:
    """The model's replicas, as the admin lists them."""
    listed: list[str] = http.get(f"/v1{model}", headers=OPS).json()["model"]["addresses"]
    return sorted(listed)


def _peak_kib(pid: int) -> int:
    """The process's peak resident memory (KiB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def _without_request_id(response: httpx.Response) -> object:
    body = response.json()
    for detail in body.get("details", []):
        detail.pop("request_id", None)
    return body


def test_a_direct_model_answers_as_the_gateway_would_and_the_rest_still_goes_there(
    stack: Stack, http: httpx.Client
) -> None:
    model = "/sax/test/direct-lm"
    _publish(http, model)
    took = _until(f"{model} goes direct", _goes_direct(stack, http, model))
    print(f"direct {took:.2f} s after its publish")
    body = {"model": model, "query": "one two three"}
    gateway, direct = envoy_stat(stack, FORWARDED), _direct_calls(stack, model)
    answer = _generate(http, body, TEAM)
    assert answer.status_code == 200, answer.text
    assert (envoy_stat(stack, FORWARDED), _direct_calls(stack, model)) == (gateway, direct + 1)
    # Logged as the client sent it, as a call to a gateway is, once; served by a replica.
    (line,) = access_log_lines(stack, answer.headers["x-request-id"], 1)
    assert (line["path"], line["grpc_method"]) == (
        "/generate",
        "/saxgateway.v1.SaxGateway/Generate",
    )
    assert (line["status"], line["grpc_status"], line["client_id"]) == (200, 0, "team")
    assert line["upstream_host"] not in stack.gateway_addresses
    # What only the gateway serves goes there, and means what it did: the same whole body.
    for through_gateway in (
        {**body, "timeout": "20s"},
        {**body, "model": model[1:]},  # not in the canonical form
        {**body, "extra_inputs": {}},
        {**body, "extraInputs": {"temperature": 0.5}},
    ):
        gateway = envoy_stat(stack, FORWARDED)
        again = _generate(http, through_gateway, TEAM)
        assert (again.status_code, again.json()) == (200, answer.json()), through_gateway
        assert envoy_stat(stack, FORWARDED) == gateway + 1, through_gateway
    # A key named twice, the last time null: Envoy's body reader keeps the last value (no
    # field), the transcoder the first (the field): the model server got a timeout it
    # ignores, extra inputs it could not parse (its 400 "Wire format was corrupt").
    named_twice = {
        '"extra_inputs": {"temperature": 0.5}, "extra_inputs": null': (200, answer.json()),
        '"timeout": "0s", "timeout": null': (400, "timeout: must be positive"),
    }
    headers = {**TEAM, "content-type": "application/json"}
    for fields, (status, expected) in named_twice.items():
        gateway = envoy_stat(stack, FORWARDED)
        raw = f'{{"model": "{model}", "query": "{body["query"]}", {fields}}}'
        again = http.post("/generate", content=raw, headers=headers)
        got = again.json() if status == 200 else again.json().get("message")
        assert (again.status_code, got) == (status, expected), fields
        assert envoy_stat(stack, FORWARDED) == gateway + 1, fields
    # A large body is not read into Envoy's JSON tree (about 85 bytes of memory a value: 4 MB
    # of an unknown field's zeros took Envoy's peak memory 107 MB -> 443 MB, on its worker
    # thread for 0.5 s), but goes to a gateway, through the transcoder's streaming parser.
    envoy = dict(stack.group.children)["envoy"].pid
    zeros = ",".join(["0"] * 2_000_000)
    raw = f'{{"model": "{model}", "query": "{body["query"]}", "unknown": [{zeros}]}}'
    gateway, peak = envoy_stat(stack, FORWARDED), _peak_kib(envoy)
    again = http.post("/generate", content=raw, headers=headers)
    assert (again.status_code, again.json()) == (200, answer.json())
    assert envoy_stat(stack, FORWARDED) == gateway + 1
    assert _peak_kib(envoy) - peak < 64 * 1024
    for who in (CAPPED,):  # a client whose calls in flight the gateway counts
        gateway = envoy_stat(stack, FORWARDED)
        assert _generate(http, body, who).json() == answer.json()
        assert envoy_stat(stack, FORWARDED) == gateway + 1
    # An empty query is the gateway's 400, not a model server's answer.
    empty = _generate(http, {"model": model, "query": ""}, TEAM)
    assert empty.status_code == 400
    assert empty.json()["message"] == "query: required"
    # A client whose model list leaves the model out: the gateway's 403, as on its own path.
    refused = _generate(http, body, NARROW)
    assert refused.status_code == 403
    on_v1 = http.post(f"/v1{model}:generate", json={"query": body["query"]}, headers=NARROW)
    assert (on_v1.status_code, _without_request_id(on_v1)) == (403, _without_request_id(refused))
    assert refused.json() == gateway_error(refused, 7, on_v1.json()["message"])
    # Unpublished: the gateway's 404 once the route is gone (a moment of the model server's
    # own NOT_FOUND before that).
    done = http.post("/unpublish", json={"model": model}, headers=OPS)
    assert done.status_code == 200, done.text
    message = f"model {model} is not published: NotFound"
    _until(
        f"{model} is the gateway's 404",
        lambda: _generate(http, body, TEAM).json().get("message") == message,
    )
    gone = _generate(http, body, TEAM)
    assert (gone.status_code, gone.json()) == (404, gateway_error(gone, 5, message))


def test_a_model_with_an_acl_goes_through_the_gateway(stack: Stack, http: httpx.Client) -> None:
    model = "/sax/test/direct-acl"
    _publish(http, model)
    _until(f"{model} goes direct", _goes_direct(stack, http, model))
    done = http.post(
        f"/v1{model}:setAcl", json={"method": "lm.generate", "acl": "acl/readers"}, headers=OPS
    )
    assert done.status_code == 200, done.text
    message = f"lm.generate on {model} is limited to acl/readers; client team is not in it"
    body = {"model": model, "query": "q"}
    _until(f"{model} is refused", lambda: _generate(http, body, TEAM).status_code == 403)
    refused = _generate(http, body, TEAM)
    assert refused.json() == gateway_error(refused, 7, message)
    # The plane takes the model's route away, then (CLUSTERS_LINGER_S later: a call routed
    # before may retry on it) its cluster, whose stats go with it.
    gone = SETTLE_S + CLUSTERS_LINGER_S
    _until(f"{model}'s cluster is gone", lambda: _direct_calls(stack, model) == 0, gone)
    gateway = envoy_stat(stack, FORWARDED)
    assert _generate(http, body, OPS).status_code == 200
    assert (envoy_stat(stack, FORWARDED), _direct_calls(stack, model)) == (gateway + 1, 0)


def test_a_direct_call_waits_out_every_replica_starting_again(
    stack: Stack, http: httpx.Client
) -> None:
    """Every replica of a model gone at once (its cell restarted, its servers killed): a call
    to a gateway waits for a replica within its deadline. A direct call was Envoy's 503
    ("remote connection failure") after two retries a few milliseconds apart: a cell restart
    that moved both replicas of a model to new ports failed 92 and 127 direct calls of about
    3,500 over 2.3-3.2 s, where 0 of the calls through the gateways failed. Now the retries
    back off (0.25 s, doubling up to 1 s), and a call gets its replica back. Before the other
    tests that kill servers: the cell starts a server that keeps dying later each time."""
    model = "/sax/test/direct-restarted"
    _publish(http, model, replicas=2)
    _until(f"{model} goes direct", _goes_direct(stack, http, model))
    addresses = _addresses(http, model)
    ports = [int(a.rsplit(":", 1)[1]) for a in addresses]
    killed = [listener_pid(port) for port in ports]
    assert None not in killed
    gateway = envoy_stat(stack, FORWARDED)
    for pid in killed:
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    # The cell starts its servers again on their ports (0.5 s), and the admin loads the
    # model there again (its cycle: 0.3 s).
    answer = _generate(http, {"model": model, "query": "one two three"}, TEAM)
    assert answer.status_code == 200, answer.text
    assert envoy_stat(stack, FORWARDED) == gateway  # direct, not by a gateway
    # The next tests find both servers serving again, the model on each.
    _until(f"{model} is on both servers again", lambda: _addresses(http, model) == addresses)


def test_calls_go_on_when_a_replica_dies(stack: Stack, http: httpx.Client) -> None:
    model = "/sax/test/direct-two"
    _publish(http, model, replicas=2)
    _until(f"{model} goes direct", _goes_direct(stack, http, model))
    addresses = http.get(f"/v1{model}", headers=OPS).json()["model"]["addresses"]
    assert len(addresses) == 2
    port = int(addresses[0].rsplit(":", 1)[1])
    assert stack.settings.cell is not None
    cell = dict(stack.group.children)["cell"]

    def calls(n: int) -> list[str]:
        """What failed of ``n`` calls."""
        answers = [_generate(http, {"model": model, "query": f"q{i}"}, TEAM) for i in range(n)]
        return [a.text for a in answers if a.status_code != 200]

    # The cell starts a killed server again on its port (0.5 s), where the model is not
    # loaded until the admin loads it again: its NOT_FOUND is tried on the other replica, as
    # the gateway's client does (before, a 404 "... is not loaded on this server" for 2-7% of
    # the calls in 3 runs of 4).
    killed = listener_pid(port)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    _until(
        f"the server on {port} is started again", lambda: listener_pid(port) not in (None, killed)
    )
    before, failed, until = _direct_calls(stack, model), list[str](), time.monotonic() + 2
    while time.monotonic() < until:
        failed += calls(1)
    assert failed == []
    # Killed while the cell cannot start it again: its port refuses, each call that picks it
    # is tried on the other replica.
    with stopped(cell.pid):
        killed = listener_pid(port)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert calls(10) == []
    assert _direct_calls(stack, model) >= before + 10


def test_routes_follow_the_cells_after_the_files_directory_is_removed(
    stack: Stack, http: httpx.Client
) -> None:
    """Removed (rm -rf, a cleaner), the directory is made again when the plane restarts, and
    Envoy with it: Envoy watched the one removed, and before, it kept the routes it had for
    good (a model published since never went direct; one unpublished or given an ACL went on
    going direct)."""
    supervisor = Supervisor(stack.group, stack.settings.restart)  # as `saxgw up` runs one
    assert stack.envoy.direct_dir is not None
    shutil.rmtree(stack.envoy.direct_dir)
    model = "/sax/test/direct-after-rm"
    body = publish_body(model, TEST_LM)
    published: list[str] = []

    def direct() -> bool:
        supervisor.tick()
        try:  # Envoy starts again meanwhile: its port refuses a moment
            if not published:
                if http.post("/publish", json=body, headers=OPS).status_code != 200:
                    return False
                published.append(model)
            return _goes_direct(stack, http, model)()
        except (httpx.TransportError, OSError):
            return False

    _until(f"{model}, published after the directory was removed, goes direct", direct)
    assert supervisor.restarts("direct") == 1
    assert supervisor.restarts("envoy") == 1


def test_a_direct_call_a_model_server_fails_is_counted_as_failed(
    stack: Stack, http: httpx.Client
) -> None:
    """A model server's error comes as a gRPC status under HTTP 200: the cluster's
    upstream_rq_xx count it as a 2xx, and the gateway's metrics never see it. Envoy's gRPC
    stats of the cluster count it by its status (docs/operations.md "Direct mode")."""
    model = "/sax/test/direct-refusing"
    refusing = publish_body(model, TEST_LM, max_in_flight="0")  # refuses every call
    assert http.post("/publish", json=refusing, headers=OPS).status_code == 200
    wait = http.post("/wait_for_ready", json={"model": model, "num_replicas": 1}, headers=OPS)
    assert wait.status_code == 200, wait.text
    body = {"model": model, "query": "q"}
    _until(
        f"{model} goes direct",
        lambda: _generate(http, body, TEAM).status_code == 429 and _direct_calls(stack, model) > 0,
    )
    # An overloaded model's 429 says when to retry, as a gateway's does (it had no
    # Retry-After when the call went direct).
    refused = _generate(http, body, TEAM)
    assert (refused.status_code, refused.headers.get("retry-after")) == (429, "1")
    stat = f"cluster.direct{model.replace('/', '_')}.grpc"
    calls = envoy_stat(stack, f"{stat}.total")
    assert calls >= 1
    assert [envoy_stat(stack, f"{stat}.{s}") for s in ("failure", "8", "success")] == [
        calls,
        calls,
        0,
    ]


def test_a_cell_whose_admin_is_down_keeps_no_other_cell_from_changing(
    stack: Stack, http: httpx.Client
) -> None:
    """A second cell in SAX_ROOT whose admin does not answer: its routes stay as they were,
    and the other cell's changes still reach Envoy. One cell down failed the whole listing,
    and every route stayed: a model published since never went direct, and one given an ACL
    went on going direct, unchecked."""
    ghost = Path(stack.settings.sax_root) / "sax" / "direct-ghost"
    ghost.mkdir()
    try:
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            admin = f"127.0.0.1:{closed.getsockname()[1]}"
        (ghost / "location.proto").write_bytes(Location(location=admin).SerializeToString())
        # Started again, the plane lists the cells at once (else every 10 s).
        plane = dict(stack.group.children)["direct"]
        plane.kill()
        plane.wait(timeout=10)
        stack.group.restart("direct")
        model = "/sax/test/direct-beside-down"
        _publish(http, model)
        _until(f"{model} goes direct", _goes_direct(stack, http, model))
    finally:
        shutil.rmtree(ghost)


def test_a_direct_cluster_keeps_the_stats_operations_reads_and_no_more(
    stack: Stack, http: httpx.Client
) -> None:
    """Each direct model is a cluster, and each cluster made 362 Prometheus series (300 models:
    a 10.2 MB scrape), mostly histograms and HTTP/2 codec counters nobody reads. What
    docs/operations.md reads stays; those go (`_listener.DROPPED_STATS`)."""
    model = "/sax/test/direct-stats"
    _publish(http, model)
    _until(f"{model} goes direct", _goes_direct(stack, http, model))
    envoy = stack.envoy
    url = f"http://{envoy.admin_address}:{envoy.admin_port}/stats/prometheus"
    label = f'envoy_cluster_name="direct{model.replace("/", "_")}"'
    text = httpx.get(url, timeout=30).text
    series = [s.split("{")[0] for s in text.splitlines() if label in s and s[0] != "#"]
    names = set(series)
    read = {
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq_retry",
        "envoy_cluster_upstream_rq_time_bucket",
        "envoy_cluster_grpc_total",
        "envoy_cluster_grpc_success",
        "envoy_cluster_grpc_0",
        "envoy_cluster_circuit_breakers_high_rq_open",
        "envoy_cluster_outlier_detection_ejections_active",
        "envoy_cluster_membership_healthy",
    }
    assert read - names == set()
    unread = {
        "envoy_cluster_http2_header_count_bucket",
        "envoy_cluster_http2_goaway_sent",
        "envoy_cluster_upstream_cx_connect_ms_bucket",
        "envoy_cluster_upstream_cx_length_ms_bucket",
        "envoy_cluster_upstream_rq_per_cx_bucket",
        "envoy_cluster_external_upstream_rq_time_bucket",
    }
    assert unread & names == set()
    assert [n for n in names if n.startswith("envoy_cluster_http2_")] == []
    print(f"{len(series)} series of {model}'s cluster")
    assert len(series) < 200
