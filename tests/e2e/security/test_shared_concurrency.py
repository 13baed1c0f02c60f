"""`max_concurrent` is the stack's, as Envoy's rate limits are: the gateway processes of
`saxgw up --workers 2` count each client's calls in flight in one table
(gateway/common/slottable.py), not each its own. Real processes: two gateways behind Envoy, a
client limited to `LIMIT` calls; a gateway holding some of them is killed with SIGKILL and
restarted by the supervisor of `saxgw up`."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import httpx
import pytest
import yaml
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings, health_answers
from gateway.launch.supervisor import Supervisor
from tests._grpc import gateway_port_channel
from tests._stacks import cell_settings, gateway_settings, healthy_stack, logs_dir, loopback_envoy
from tests.e2e._bodies import gateway_error
from tests.e2e._published import TEST_LM, published

pytestmark = pytest.mark.e2e

LIMIT = 3
OPS_KEY = "sk-ops-5e1d7c3b9a20"
TEAM_A_KEY = "sk-team-a-0c4f8e2a6b13"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}
#: What Envoy tells a gateway after authenticating team-a; a test calling a gateway directly
#: (on its loopback port, behind Envoy) says it itself.
AS_TEAM_A = (("x-saxgw-client", "team-a"),)
_Call: TypeAlias = "grpc.Future[pb.GenerateResponse]"  # typing only: grpc's is no generic
SLOW = "/sax/test/shared-slow"
HELD = "/sax/test/shared-held"
QUICK = "/sax/test/shared-quick"
BUSY = f"client team-a has {LIMIT} calls in flight, its limit; retry later"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base: Path = tmp_path_factory.mktemp("shared-concurrency")
    config_file = base / "saxgw.yaml"
    config = {
        "auth": {
            "api_keys": [
                {"key": OPS_KEY, "client": "ops", "roles": ["admin", "data"]},
                {"key": TEAM_A_KEY, "client": "team-a", "roles": ["data"]},
            ]
        },
        "clients": {"team-a": {"max_concurrent": LIMIT}},
    }
    config_file.write_text(yaml.safe_dump(config))
    settings = StackSettings(
        gateway=gateway_settings(base, config_file=str(config_file)),
        cell=cell_settings(base, servers=1),
        gateway_ports=(free_port(), free_port()),  # as `saxgw up --workers 2`
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        log_dir=str(logs_dir(base)),
    )
    with (
        healthy_stack(settings, "two-gateway stack") as running,
        published(running, SLOW, TEST_LM, {"text": "slow", "delay_ms": "6000"}, headers=OPS),
        published(running, QUICK, TEST_LM, {"text": "quick"}, headers=OPS),
        published(running, HELD, TEST_LM, {"text": "held", "delay_ms": "10000"}, headers=OPS),
    ):
        yield running


def _routed(stack: Stack) -> dict[str, int]:
    """Requests Envoy has sent to each gateway (its admin's /clusters)."""
    url = f"http://127.0.0.1:{stack.envoy.admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    routed = {}
    for line in lines:
        cluster, host, *stat = line.split("::")
        if cluster == "gateway_grpc" and stat[:1] == ["rq_total"]:
            routed[host] = int(stat[1])
    return routed


def test_n_plus_k_calls_through_both_gateways_admit_exactly_n(stack: Stack) -> None:
    before = _routed(stack)
    replies: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=stack.http_url, timeout=30, headers=TEAM_A) as http:
            replies.append(http.post("/generate", json={"model": SLOW, "query": "q"}))

    callers = [threading.Thread(target=call) for _ in range(LIMIT + 3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    routed = _routed(stack)
    # Envoy balanced the calls over both gateways (round robin): each took some.
    assert all(routed[host] > before[host] for host in before), (before, routed)
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * LIMIT + [429] * 3, [reply.text for reply in replies]
    for reply in replies:
        if reply.status_code == 200:
            assert reply.json() == {"texts": [{"text": "slow", "score": pytest.approx(-0.1)}]}
        else:  # as a gateway run alone refuses: the same body and Retry-After
            assert reply.json() == gateway_error(reply, 8, BUSY)
            assert reply.headers["retry-after"] == "1"


def _generate(channel: grpc.Channel, model: str) -> _Call:
    stub = gateway_pb2_grpc.SaxGatewayStub(channel)
    request = pb.GenerateRequest(model=model, query="q")
    future: _Call = stub.Generate.future(request, metadata=AS_TEAM_A, timeout=60)
    return future


def _refused(channel: grpc.Channel) -> bool:
    """Whether a quick call of team-a on this gateway is refused for its limit now."""
    try:
        _generate(channel, QUICK).result()
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        assert exc.details() == BUSY
        return True
    return False


def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.1)


def _hold(channel: grpc.Channel, other: grpc.Channel) -> list[_Call]:
    """``LIMIT`` calls of team-a in flight on ``channel``'s gateway, once ``other``'s refuses
    team-a for them."""
    held: list[_Call] = []

    def holding() -> bool:
        # A probe that came before the held calls took a slot one of them wanted: again.
        held[:] = [call for call in held if not call.done()]
        if len(held) < LIMIT:
            held.extend(_generate(channel, HELD) for _ in range(LIMIT - len(held)))
            time.sleep(0.5)
            return False
        return _refused(other)

    _until(holding, "the held calls to count on the other gateway", timeout=15)
    return held


def test_the_slots_of_a_killed_gateway_come_back(stack: Stack) -> None:
    supervisor = Supervisor(stack.group, stack.settings.restart)  # as `saxgw up` runs one
    first_address, second_address = stack.gateway_addresses

    def kill_first() -> None:
        process = dict(stack.group.children)["gateway-0"]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)  # gone for good: its files, and so its locks, closed

    def restarted(times: int) -> bool:
        supervisor.tick()
        return supervisor.restarts("gateway-0") == times and health_answers(first_address)

    with gateway_port_channel(stack, second_address) as second:
        # Killed while it holds all of team-a's calls, then restarted: the new process
        # starts from zero, and team-a may use all of them again.
        with gateway_port_channel(stack, first_address) as first:
            held = _hold(first, second)
            kill_first()
            for call in held:
                error = call.exception()
                assert isinstance(error, grpc.RpcError)
                assert error.code() == grpc.StatusCode.UNAVAILABLE
        _until(lambda: restarted(1), "the supervisor to restart gateway-0")
        with gateway_port_channel(stack, first_address) as first:
            held = _hold(first, second)
            assert _refused(first)
            # Killed again, and not restarted yet: the other gateway finds it gone as it is
            # about to refuse a call, and frees what it held.
            kill_first()
            for call in held:
                call.exception()
        for call in _hold(second, second):
            call.cancel()
    _until(lambda: restarted(2), "the supervisor to restart gateway-0 again")
