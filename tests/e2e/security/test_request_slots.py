"""An OpenAI request of many prompts (or embedding inputs) is one admission and many model
calls (`_Admission.each`): its calls in flight count against its client's ``max_concurrent``,
in the count the stack's gateway processes share, and between two of them its model slot goes
to a call queued for one. Before, it ran as many calls at once as the model had free slots,
whatever its client's limit, and held them until all its prompts were done.

Real processes: two gateways behind Envoy, as `saxgw up --workers 2` runs them, and a model
server whose test models refuse a call beyond their own ``max_in_flight`` (RESOURCE_EXHAUSTED,
reported at once: ``--overloaded-after=0``). A request that sent more calls at once than its
client may have fails so, whatever the timing.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
import yaml
from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc, openai_pb2, openai_pb2_grpc

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._grpc import gateway_port_channel
from tests._stacks import cell_settings, gateway_settings, healthy_stack, logs_dir, loopback_envoy
from tests.e2e._published import TEST_LM, published

pytestmark = pytest.mark.e2e

LIMIT = 2
OPS_KEY = "sk-ops-9a4c1e7f3b02"
TEAM_A_KEY = "sk-team-a-6d2f8b0c4e19"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}
#: What Envoy tells a gateway after authenticating team-a (a call to a gateway's own port).
AS_TEAM_A = (("x-saxgw-client", "team-a"),)
#: Serves ``LIMIT`` calls at once, refuses more: team-a's limit, seen at the model.
AT_LIMIT = "/sax/test/slots-two"
#: Serves one call at once.
ONE = "/sax/test/slots-one"
#: The gateways run one call of it at once (quotas.models) and queue the others.
QUEUED = "/sax/test/slots-queued"
#: Runs one call at once across the stack's gateways (quotas.models), queues one more; its
#: model server refuses a second call at once.
STACKED = "/sax/test/slots-stacked"
#: A stream that holds one of team-a's calls until it is cancelled.
HELD = "/sax/test/slots-held"
# Two tokens of 0.15 s: a call takes 0.3 s.
CALL = {"text": "a b", "delay_ms": "150"}
# Eight tokens of 0.1 s: a stream its test cancels once it has begun.
STACKED_CALL = {"text": "a b c d e f g h", "delay_ms": "100"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("request-slots")
    config_file = base / "saxgw.yaml"
    config = {
        "auth": {
            "api_keys": [
                {"key": OPS_KEY, "client": "ops", "roles": ["admin", "data"]},
                {"key": TEAM_A_KEY, "client": "team-a", "roles": ["data"]},
            ]
        },
        "clients": {"team-a": {"max_concurrent": LIMIT}},
        "quotas": {
            "models": {
                QUEUED: {"max_in_flight": 1, "max_queued": 8},
                STACKED: {"max_in_flight": 1, "max_queued": 1},
            }
        },
    }
    config_file.write_text(yaml.safe_dump(config))
    gateway = gateway_settings(base, config_file=str(config_file))
    # A model server's refusal is the call's answer at once, not retried for a second.
    client = dataclasses.replace(gateway.client, overloaded_after=0.0)
    settings = StackSettings(
        gateway=dataclasses.replace(gateway, client=client),
        cell=cell_settings(base, servers=1),
        gateway_ports=(free_port(), free_port()),  # as `saxgw up --workers 2`: shared counts
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        log_dir=str(logs_dir(base)),
    )
    with (
        healthy_stack(settings, "two-gateway stack") as running,
        published(running, AT_LIMIT, TEST_LM, {**CALL, "max_in_flight": str(LIMIT)}, OPS),
        published(running, ONE, TEST_LM, {**CALL, "max_in_flight": "1"}, OPS),
        published(running, QUEUED, TEST_LM, CALL, OPS),
        published(running, HELD, TEST_LM, {"text": "a b c d e f", "delay_ms": "2000"}, OPS),
        published(running, STACKED, TEST_LM, {**STACKED_CALL, "max_in_flight": "1"}, OPS),
    ):
        yield running


def _prompts(count: int) -> list[str]:
    return [f"p{number}" for number in range(count)]


def _texts(body: dict[str, object]) -> list[str]:
    choices = body["choices"]
    assert isinstance(choices, list)
    return [choice["text"] for choice in choices]


def test_a_request_of_many_prompts_runs_no_more_calls_than_its_clients_limit(
    stack: Stack,
) -> None:
    # Before, 8 calls at once (the request's slot, and 7 of the model's 64 free ones): the
    # model refused the third, and the request failed 429.
    with httpx.Client(base_url=stack.http_url, timeout=60, headers=TEAM_A) as http:
        response = http.post("/v1/completions", json={"model": AT_LIMIT, "prompt": _prompts(8)})
    assert response.status_code == 200, response.text
    assert _texts(response.json()) == ["a b"] * 8


def _completion(
    model: str, prompts: list[str], stream: bool = False
) -> openai_pb2.CreateCompletionRequest:
    body = json.dumps({"model": model, "prompt": prompts, "stream": stream}).encode()
    return openai_pb2.CreateCompletionRequest(
        body=HttpBody(content_type="application/json", data=body)
    )


def test_the_clients_calls_on_another_gateway_count_against_a_requests_calls(
    stack: Stack,
) -> None:
    # team-a holds one call on the second gateway: a request on the first has one more call
    # in flight at a time, in the count both share (a count of its own process would allow
    # it two: the model, which serves one, would refuse the second).
    first, second = stack.gateway_addresses
    with gateway_port_channel(stack, first) as one, gateway_port_channel(stack, second) as other:
        held = gateway_pb2_grpc.SaxGatewayStub(other).GenerateStream(
            pb.GenerateStreamRequest(model=HELD, query="q"), metadata=AS_TEAM_A, timeout=60
        )
        assert next(held).deltas  # admitted: one of team-a's calls until it is cancelled
        try:
            stub = openai_pb2_grpc.OpenAIGatewayStub(one)
            request = _completion(ONE, _prompts(6))
            replies = list(stub.CreateCompletion(request, metadata=AS_TEAM_A, timeout=60))
        finally:
            held.cancel()
    assert _texts(json.loads(b"".join(reply.data for reply in replies))) == ["a b"] * 6


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_call_queued_behind_a_request_of_many_prompts_does_not_wait_for_all_of_them(
    stack: Stack, stream: bool
) -> None:
    # The model runs one call at once on a gateway: 12 prompts hold it for 3.6 s. A call
    # queued behind them gets the slot after one of them, and ends long before them. Before,
    # it waited for all 12, and ended after them.
    first, _ = stack.gateway_addresses
    ends: dict[str, float] = {}
    with gateway_port_channel(stack, first) as channel:
        openai = openai_pb2_grpc.OpenAIGatewayStub(channel)
        generate = gateway_pb2_grpc.SaxGatewayStub(channel)

        def batch() -> None:
            for _ in openai.CreateCompletion(_completion(QUEUED, _prompts(12), stream), timeout=60):
                pass
            ends["batch"] = time.monotonic()

        running = threading.Thread(target=batch)
        running.start()
        _until_the_slot_is_taken(generate)
        reply = generate.Generate(pb.GenerateRequest(model=QUEUED, query="q"), timeout=60)
        ends["single"] = time.monotonic()
        running.join()
    assert [text.text for text in reply.texts] == ["a b"]
    assert ends["single"] < ends["batch"], ends


def _until_the_slot_is_taken(stub: gateway_pb2_grpc.SaxGatewayStub) -> None:
    """Returns once the model's one slot on the gateway is taken (by the request of many
    prompts): a probe that cannot wait ends in the queue rather than in the call."""
    deadline = time.monotonic() + 30
    while True:
        try:
            stub.Generate(pb.GenerateRequest(model=QUEUED, query="probe"), timeout=0.1)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
            if "waiting in the model's queue" in (exc.details() or ""):
                return
        assert time.monotonic() < deadline, "the request never took the model's slot"


def test_a_models_limit_holds_for_the_stack_not_for_each_gateway(stack: Stack) -> None:
    # `max_in_flight: 1, max_queued: 1`: a stream on the second gateway holds the model's one
    # slot; a call to the first waits in the queue and runs once the stream ends, and the
    # next one, to either gateway, finds the stack's queue full. Before, each gateway counted
    # its own calls: the first sent the call on to the model at once (which refused it: it
    # runs one), and a call to the busy gateway was refused while the other was idle.
    first, second = stack.gateway_addresses
    request = pb.GenerateStreamRequest(model=STACKED, query="q")
    with gateway_port_channel(stack, first) as one, gateway_port_channel(stack, second) as other:
        held = gateway_pb2_grpc.SaxGatewayStub(other).GenerateStream(request, timeout=60)
        assert next(held).deltas  # in flight until it is cancelled
        try:
            queued = gateway_pb2_grpc.SaxGatewayStub(one).GenerateStream(request, timeout=60)
            time.sleep(0.3)  # it reaches the first gateway's queue
            for channel in (one, other):
                with pytest.raises(grpc.RpcError) as shed:
                    gateway_pb2_grpc.SaxGatewayStub(channel).Generate(
                        pb.GenerateRequest(model=STACKED, query="q"), timeout=10
                    )
                assert (shed.value.code(), shed.value.details()) == (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{STACKED} is at its limit of calls in flight and queued; retry later",
                )
        finally:
            held.cancel()
        messages = list(queued)  # the slot the other gateway gave back
    assert "".join(d.text for m in messages for d in m.deltas) == STACKED_CALL["text"]
    assert [t.text for t in messages[-1].texts] == [STACKED_CALL["text"]]
