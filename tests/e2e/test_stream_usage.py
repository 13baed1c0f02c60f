"""What a stream that does not finish counts: the text it already sent, on every streaming API
(SaxGateway's GenerateStream over HTTP and gRPC, OpenAI's completions, chat completions and
responses), whether its model fails mid-stream, its model server is killed, or its client
goes away. Checked on the ops server's real /metrics scrape.

A stack of its own (an embedded cell with two model servers, one gateway, Envoy, the ops
server; one API key): the last test kills a model server.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._grpc import sync_channel
from tests._stacks import cell_settings, gateway_settings, healthy_stack, logs_dir, loopback_envoy
from tests.e2e._access_log import access_log_lines_after, access_log_size
from tests.e2e._openai import ANSWER, write_config
from tests.e2e._published import TEST_LM, published

FAILS = "/sax/test/usage-fails"  # fails after its third token
SLOW = "/sax/test/usage-slow"  # a token every half second: a client can leave between two
KILLED = "/sax/test/usage-killed"  # as slow; its model server is killed mid-stream
FAST = "/sax/test/usage-fast"  # ANSWER at once
SENT = "Paris is the"  # ANSWER's first three tokens: what FAILS sends, what a client reads
KEY = "sk-team-a-usage-7d2f"
AUTH = {"authorization": f"Bearer {KEY}"}
CHARS = "saxgw_text_characters_total"
TOKENS = "gen_ai_client_token_usage"
REQUESTS = "saxgw_requests_total"


@pytest.fixture(scope="module")
def usage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, with a chat template and the word-level tokenizer for every model."""
    base = tmp_path_factory.mktemp("usage-stack")
    write_config(base)  # the SentencePiece model spm.model, beside the config
    config_file = base / "saxgw.yaml"
    model = {"chat_template_name": "chatml", "tokenizer": "spm.model"}
    config_file.write_text(
        yaml.safe_dump(
            {
                "auth": {
                    "api_keys": [{"key": KEY, "client": "team-a", "roles": ["admin", "data"]}]
                },
                "models": {FAILS: model, SLOW: model, KILLED: model},
            }
        )
    )
    settings = StackSettings(
        gateway=gateway_settings(base, config_file=str(config_file)),
        # Fast admin cycles: the killed server's models move within a second or two.
        cell=cell_settings(base, servers=2, poll_interval=0.3, server_dead_after=2),
        gateway_ports=(free_port(),),
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        ops_port=free_port(),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "the usage stack") as running:
        fails = {"text": ANSWER, "fail_after_tokens": "3", "fail_code": "INTERNAL"}
        slow = {"text": ANSWER, "length": "40", "delay_ms": "500"}
        with (
            published(running, FAILS, TEST_LM, fails, AUTH),
            published(running, SLOW, TEST_LM, slow, AUTH),
            published(running, KILLED, TEST_LM, slow, AUTH),
        ):
            yield running


# The streaming APIs: their path, request body, gRPC method and operation label.
Api = tuple[str, Callable[[str], dict[str, Any]], str, str]
APIS: dict[str, Api] = {
    "generate_stream": (
        "/generate_stream",
        lambda model: {"model": model, "query": "hi"},
        "GenerateStream",
        "lm.generate_stream",
    ),
    "completions": (
        "/v1/completions",
        lambda model: {"model": model, "prompt": "hi", "stream": True},
        "CreateCompletion",
        "text_completion",
    ),
    "chat": (
        "/v1/chat/completions",
        lambda model: {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        "CreateChatCompletion",
        "chat",
    ),
    "responses": (
        "/v1/responses",
        lambda model: {"model": model, "input": "hi", "stream": True},
        "CreateResponse",
        "chat",
    ),
}


def _text(event: dict[str, Any]) -> str:
    """The model text one event of any of the APIs carries."""
    if "deltas" in event:  # GenerateStream
        return "".join(d["text"] for d in event["deltas"])
    if event.get("type") == "response.output_text.delta":  # Responses API
        return str(event["delta"])
    text = ""
    for choice in event.get("choices", ()):  # completions and chat completions
        text += choice.get("text") or (choice.get("delta") or {}).get("content") or ""
    return text


def _texts(response: httpx.Response) -> Iterator[str]:
    """The text of each event, as the events arrive (events without text included)."""
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield _text(json.loads(line.removeprefix("data: ")))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(stack: Stack) -> Samples:
    assert stack.metrics_url is not None
    scrape = httpx.get(stack.metrics_url, timeout=30)
    assert scrape.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Counts:
    """The scrape before some calls, and what the calls added since."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.before = _scrape(stack)
        self.after = self.before

    def added(self, name: str, **labels: str) -> float:
        return _value(self.after, name, **labels) - _value(self.before, name, **labels)

    def wait(self, method: str, code: str, timeout: float = 20.0, calls: int = 1) -> None:
        """Scrapes until ``calls`` more ``method`` calls ended with ``code``. The gateway writes
        a call's counts out together (once a second), so its characters are in the same
        scrape."""
        labels = {"grpc_method": method, "grpc_code": code, "client": "team-a"}
        deadline = time.monotonic() + timeout
        while True:
            self.after = _scrape(self._stack)
            if self.added(REQUESTS, **labels) >= calls:
                assert self.added(REQUESTS, **labels) == calls
                return
            assert time.monotonic() < deadline, f"no {method} call ended with {code}"
            time.sleep(0.2)

    def output(self, op: str, model: str) -> float:
        return self.added(
            CHARS, gen_ai_operation_name=op, gen_ai_request_model=model, direction="output"
        )

    def output_tokens(self, op: str, model: str) -> tuple[float, float]:
        """(observations, sum) of the output token histogram for team-a."""
        labels = {
            "gen_ai_operation_name": op,
            "gen_ai_request_model": model,
            "gen_ai_token_type": "output",
            "client": "team-a",
        }
        return self.added(f"{TOKENS}_count", **labels), self.added(f"{TOKENS}_sum", **labels)


@pytest.mark.parametrize("api", APIS)
def test_a_stream_whose_model_fails_counts_the_text_it_sent(usage_stack: Stack, api: str) -> None:
    path, body, method, op = APIS[api]
    counts = Counts(usage_stack)
    with (
        httpx.Client(base_url=usage_stack.http_url, headers=AUTH, timeout=30) as http,
        http.stream("POST", path, json=body(FAILS)) as response,
    ):
        assert response.status_code == 200
        received = "".join(_texts(response))  # to the in-band error at its end
    assert received == SENT
    counts.wait(method, "INTERNAL")
    # Counted once, under the model and operation a successful stream counts under.
    assert counts.output(op, FAILS) == len(SENT)
    # The model's tokenizer counts the same text: "Paris", " is", " the".
    assert counts.output_tokens(op, FAILS) == (1, 3)


@pytest.mark.parametrize("api", APIS)
def test_a_stream_the_client_leaves_counts_the_text_it_sent(usage_stack: Stack, api: str) -> None:
    path, body, method, op = APIS[api]
    counts = Counts(usage_stack)
    received = ""
    with (
        httpx.Client(base_url=usage_stack.http_url, headers=AUTH, timeout=30) as http,
        http.stream("POST", path, json=body(SLOW)) as response,
    ):
        assert response.status_code == 200
        for text in _texts(response):
            received += text
            if received == SENT:
                break  # leaving the blocks closes the connection, half a second before more
    assert received == SENT
    counts.wait(method, "CANCELLED")
    assert counts.output(op, SLOW) == len(SENT)
    assert counts.output_tokens(op, SLOW) == (1, 3)


def test_sdk_streams_read_to_done_are_ok_however_soon_their_clients_leave(
    usage_stack: Stack,
) -> None:
    # The OpenAI SDKs close the connection at `data: [DONE]`, often before the stream's status
    # reaches Envoy: Envoy reset the call, and its access log said CANCELLED (7 streams in 40
    # on a 2-core host), and the gateway's metrics (1 in 20), for streams answered in full.
    streams = 30
    counts = Counts(usage_stack)
    offset = access_log_size(usage_stack)
    url = usage_stack.http_url + "/v1"
    with (
        published(usage_stack, FAST, TEST_LM, {"text": ANSWER}, AUTH),
        openai.OpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk,
    ):
        texts = [
            "".join(c.choices[0].text for c in sdk.completions.create(**_COMPLETION))
            for _ in range(streams)
        ]
    assert texts == [ANSWER] * streams
    counts.wait("CreateCompletion", "OK", calls=streams)
    labels = {"grpc_method": "CreateCompletion", "grpc_code": "CANCELLED", "client": "team-a"}
    assert counts.added(REQUESTS, **labels) == 0
    lines = access_log_lines_after(
        usage_stack, offset, lambda line: line["path"] == "/v1/completions", streams
    )
    assert [(line["status"], line["grpc_status"]) for line in lines] == [(200, 0)] * streams


_COMPLETION: dict[str, Any] = {"model": FAST, "prompt": "hi", "stream": True}


def test_a_grpc_stream_the_client_cancels_counts_the_text_it_sent(usage_stack: Stack) -> None:
    counts = Counts(usage_stack)
    received = ""
    with sync_channel(usage_stack.grpc_address) as channel:
        call = gateway_pb2_grpc.SaxGatewayStub(channel).GenerateStream(
            pb.GenerateStreamRequest(model=SLOW, query="hi"),
            metadata=tuple(AUTH.items()),
        )
        for message in call:
            received += "".join(d.text for d in message.deltas)
            if received == SENT:
                call.cancel()
                break
    assert received == SENT
    counts.wait("GenerateStream", "CANCELLED")
    assert counts.output("lm.generate_stream", SLOW) == len(SENT)
    assert counts.output_tokens("lm.generate_stream", SLOW) == (1, 3)


def test_a_stream_whose_model_server_is_killed_counts_the_text_it_sent(
    usage_stack: Stack,
) -> None:
    # Last in the module: the cell restarts the server, and its models move meanwhile.
    with httpx.Client(base_url=usage_stack.http_url, headers=AUTH, timeout=30) as http:
        (address,) = http.get(f"/v1{KILLED}").json()["model"]["addresses"]
        server = listener_pid(int(address.rsplit(":", 1)[1]))
        assert server is not None and server != os.getpid()
        counts = Counts(usage_stack)
        received, killed = "", False
        with http.stream("POST", "/v1/chat/completions", json=APIS["chat"][1](KILLED)) as response:
            assert response.status_code == 200
            for text in _texts(response):
                received += text
                if received == SENT and not killed:
                    os.kill(server, signal.SIGKILL)
                    killed = True
            # The stream went on to its in-band error (whatever text came before the kill).
    assert received.startswith(SENT) and len(received) < len(ANSWER)
    counts.wait("CreateChatCompletion", "UNAVAILABLE")
    assert counts.output("chat", KILLED) == len(received)
    assert counts.output_tokens("chat", KILLED) == (1, len(received.split()))
