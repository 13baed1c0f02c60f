"""clients/python (saxgateway_client) through Envoy's gRPC port: results, streams as
iterators, deadlines, and errors as typed exceptions with their BadRequest details."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway_client import (
    BadRequestError,
    CancelledError,
    Client,
    DeadlineExceededError,
    FieldViolation,
    NotFoundError,
    ResourceExhaustedError,
    ServerError,
)

from gateway.launch.stack import Stack
from tests._approx import approx
from tests.e2e._access_log import access_log_line, access_log_lines
from tests.e2e._published import TEST_CUSTOM, TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]
# A channel's service config, as docs/clients.md gives one, retrying what is cheap to retry
# here (NOT_FOUND, at once) three times: each attempt is a line of Envoy's access log.
RETRYING = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "saxgateway.v1.SaxGateway"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.01s",
                    "backoffMultiplier": 1,
                    "retryableStatusCodes": ["NOT_FOUND"],
                },
            }
        ]
    }
)


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.grpc_address, timeout=30) as client:
        yield client


def test_generate_with_extra_inputs(stack: Stack, client: Client) -> None:
    with published(stack, "/sax/test/py-client", TEST_LM, {"text": "hello from python"}) as model:
        assert client.generate(model, "q") == [("hello from python", approx(-0.3))]
        capped = client.generate(
            model, "q", extra={"per_example_max_decode_steps": 2, "stop": "\n", "bias": [0.5, -0.5]}
        )
        assert capped == [("hello from", approx(-0.2))]
        assert client.score(model, "a", ["b c", "d"]) == [approx(-0.2), approx(-0.1)]


def test_generate_stream_is_an_iterator(stack: Stack, client: Client) -> None:
    with published(stack, "/sax/test/py-stream", TEST_LM, {"text": "one two three"}) as model:
        items = list(client.generate_stream(model, "q"))
    assert [d.text for item in items for d in item.deltas] == ["one", " two", " three"]
    assert items[-1].done
    assert [t.text for t in items[-1].texts] == ["one two three"]


def test_a_loop_that_stops_at_done_leaves_the_call_succeeded(stack: Stack) -> None:
    # The loop's break cancelled the call whenever its status had not arrived yet (about half
    # the time): the gateway and Envoy logged CANCELLED for a stream that had answered in full.
    ids = [f"py-done-{uuid.uuid4()}" for _ in range(8)]
    with published(stack, "/sax/test/py-done", TEST_LM, {"text": "one two three"}) as model:
        for request_id in ids:  # its own ID per stream: Envoy's log names each one
            metadata = [("x-request-id", request_id)]
            with Client(stack.grpc_address, timeout=30, metadata=metadata) as client:
                for item in client.generate_stream(model, "q"):
                    if item.done:
                        break
    lines = [access_log_line(stack, request_id) for request_id in ids]
    ended = [(line["status"], line["grpc_status"], line["response_flags"]) for line in lines]
    assert ended == [(200, 0, "-")] * len(ids)


def test_stream_failure_in_band_raises(stack: Stack, client: Client) -> None:
    overrides = {"text": "a b c d", "fail_after_tokens": "2", "fail_code": "INTERNAL"}
    with published(stack, "/sax/test/py-stream-fails", TEST_LM, overrides) as model:
        seen = []
        with pytest.raises(ServerError) as raised:
            for item in client.generate_stream(model, "q"):
                seen += [d.text for d in item.deltas]
    assert seen == ["a", " b"]
    assert raised.value.code.name == "INTERNAL"


def test_a_stream_failing_midway_raises_its_status_and_is_not_cancelled(stack: Stack) -> None:
    # The client raised the in-band error and cancelled the call before its status came: Envoy
    # logged about half of such streams CANCELLED (response flag DR), and retry_after was
    # None though the status's trailers asked for 1 s (the in-band Status carries no wait).
    overrides = {"text": "a b c d", "fail_after_tokens": "2", "fail_code": "RESOURCE_EXHAUSTED"}
    ids = [f"py-midway-{uuid.uuid4()}" for _ in range(6)]
    with (
        published(stack, "/sax/test/py-midway", TEST_LM, overrides) as model,
        Client(stack.grpc_address, timeout=30) as client,
    ):
        for request_id in ids:
            with pytest.raises(ResourceExhaustedError) as raised:
                list(client.generate_stream(model, "q", metadata=[("x-request-id", request_id)]))
            assert (raised.value.retry_after, raised.value.request_id) == (1.0, request_id)
    lines = [access_log_line(stack, request_id) for request_id in ids]
    ended = [(line["grpc_status"], line["response_flags"]) for line in lines]
    assert ended == [(8, "-")] * len(ids)


def test_any_streaming_rpc_by_name(stack: Stack, client: Client) -> None:
    # WatchAddresses had no way in: call() handed back grpc's raw iterator, whose failures
    # were grpc.RpcError, not the SaxGatewayError its README promises.
    request = pb.WatchAddressesRequest(model="/sax/test/py-watch")
    with pytest.raises(TypeError, match=r"Client.stream\('WatchAddresses'"):
        client.call("WatchAddresses", request)
    with pytest.raises(TypeError, match=r"Client.call\('Generate'"):
        client.stream("Generate", pb.GenerateRequest())
    # A name the service lacks: the stub's bare AttributeError before.
    with pytest.raises(ValueError, match=r"^'Nope' is not an RPC of saxgateway.v1.SaxGateway"):
        client.call("Nope", pb.GenerateRequest())
    with pytest.raises(ValueError, match=r"it has .*WatchAddresses"):
        client.stream("Nope", pb.GenerateRequest())
    with pytest.raises(NotFoundError):
        next(client.stream("WatchAddresses", request))
    with published(stack, "/sax/test/py-watch", TEST_LM):
        first = next(client.stream("WatchAddresses", request))
    assert first.addresses and all(a.startswith("127.0.0.1:") for a in first.addresses)


def test_bad_request_carries_field_violations(client: Client) -> None:
    with pytest.raises(BadRequestError) as raised:
        client.generate("lm2b", "q")
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert [v.field for v in raised.value.field_violations] == ["model"]
    assert isinstance(raised.value.field_violations[0], FieldViolation)


def test_bad_extra_input_names_the_key(stack: Stack, client: Client) -> None:
    with published(stack, "/sax/test/py-bad-extra", TEST_LM) as model:
        request = pb.GenerateRequest(model=model, query="q")
        request.extra_inputs["nested"].struct_value.update({"a": 1})
        with pytest.raises(BadRequestError) as raised:
            client.call("Generate", request)
    assert [v.field for v in raised.value.field_violations] == ["extra_inputs[nested]"]


def test_unknown_model_is_not_found(stack: Stack, client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.generate("/sax/test/no-such-model", "q")
    # The call's ID, to find it in the gateway's and Envoy's logs, as the Node client's
    # requestId: it was left in a RequestInfo detail for each caller to unpack.
    tagged = [("x-request-id", "py-rid-7")]
    with (
        Client(stack.grpc_address, metadata=tagged) as asked,
        pytest.raises(NotFoundError) as raised,
    ):
        asked.generate("/sax/test/no-such-model", "q")
    assert raised.value.request_id == "py-rid-7"
    # A call's own metadata, beside the client's and for a key both set instead of it, as
    # the Node client's: a Python caller made a Client per request ID.
    own = [("x-request-id", "py-call-8")]
    with Client(stack.grpc_address, metadata=tagged) as asked:
        with pytest.raises(NotFoundError) as raised:
            asked.generate("/sax/test/no-such-model", "q", metadata=own)
        assert raised.value.request_id == "py-call-8"
        with pytest.raises(NotFoundError) as raised:
            next(asked.generate_stream("/sax/test/no-such-model", "q", metadata=own))
        assert raised.value.request_id == "py-call-8"
    with pytest.raises(NotFoundError):
        client.unpublish("/sax/test/no-such-model")


def test_metadata_keys_are_header_names_of_any_case(stack: Stack) -> None:
    # grpc takes lowercase keys alone: ("Authorization", ...), as HTTP clients spell it, failed
    # every call ServerError INTERNAL 'Invalid metadata', the server blamed for the caller's
    # spelling (the Node client's grpc-js lowercases them).
    with (
        Client(stack.grpc_address, metadata=[("X-Request-Id", "py-case-1")]) as client,
        pytest.raises(NotFoundError) as raised,
    ):
        client.generate("/sax/test/no-such-model", "q")
    assert raised.value.request_id == "py-case-1"
    with pytest.raises(ValueError, match=r"^metadata key 'x request' is not a header name"):
        Client(stack.grpc_address, metadata=[("x request", "1")])
    # A key read from a file with its newline was INTERNAL 'Invalid metadata' too; the error
    # names the key, never the value (a secret).
    for value in ("Bearer sk-secret\n", "José"):
        with pytest.raises(ValueError) as refused:
            Client(stack.grpc_address).generate(
                "/sax/test/m", "q", metadata=[("Authorization", value)]
            )
        assert str(refused.value) == (
            "metadata 'authorization': its value is not one a header may have (printable ASCII, "
            "no line break; bytes under a key ending -bin)"
        )


def test_deadline_is_applied(stack: Stack, client: Client) -> None:
    slow = {"text": "a b", "delay_ms": "3000"}
    with (
        published(stack, "/sax/test/py-slow", TEST_LM, slow) as model,
        pytest.raises(DeadlineExceededError),
    ):
        client.generate(model, "q", timeout=0.5)


def test_an_endless_timeout_is_no_deadline_of_the_client(stack: Stack) -> None:
    # grpc took a timeout of infinity (or over ~9e9 s) for one already past: the call failed
    # at once, DEADLINE_EXCEEDED, which no deadline had caused. A NaN did the same.
    info = pb.GetInfoRequest()
    with Client(stack.grpc_address, timeout=math.inf) as endless:
        assert endless.call("GetInfo", info).message == "HTTP Server for SAX Client"
        assert endless.call("GetInfo", info, timeout=1e12).message == "HTTP Server for SAX Client"
        with pytest.raises(ValueError, match=r"^timeout must be a number of seconds, not nan$"):
            endless.call("GetInfo", info, timeout=math.nan)
        with pytest.raises(ValueError, match=r"^timeout must be"):
            next(endless.stream("WatchAddresses", pb.WatchAddressesRequest(), timeout=math.nan))


def test_channel_options_reach_the_channel(stack: Stack) -> None:
    # docs/clients.md's retry policy is a channel's service config; neither client took
    # channel options, so a caller of the packaged client could not retry as it says.
    request_id = f"py-retried-{uuid.uuid4()}"
    options = [("grpc.service_config", RETRYING)]
    with (
        Client(stack.grpc_address, options=options) as retrying,
        pytest.raises(NotFoundError),
    ):
        retrying.generate("/sax/test/no-such-model", "q", metadata=[("x-request-id", request_id)])
    assert [line["grpc_status"] for line in access_log_lines(stack, request_id, 3)] == [5, 5, 5]


#: Over grpc's default receive limit (4 MiB), under the gateway's message limit (32 MiB).
BIG = b"a" * (5 << 20)


@pytest.fixture(scope="module")
def custom(stack: Stack) -> Iterator[str]:
    with published(stack, "/sax/test/py-client-custom", TEST_CUSTOM) as model:
        yield model


def test_a_reply_over_grpcs_default_limit_is_received(client: Client, custom: str) -> None:
    # The gateway sends it (HTTP/JSON callers got it); the client raised ResourceExhaustedError
    # "Received message larger than max", which reads as a rate limit.
    reply = client.call("Custom", pb.CustomRequest(model=custom, method_name="echo", request=BIG))
    assert reply.response == BIG


def test_the_callers_channel_options_win(stack: Stack, custom: str) -> None:
    options = [("grpc.max_receive_message_length", 1 << 20)]
    request = pb.CustomRequest(model=custom, method_name="echo", request=BIG)
    with (
        Client(stack.grpc_address, options=options) as capped,
        pytest.raises(ResourceExhaustedError, match="larger than max"),
    ):
        capped.call("Custom", request)


def test_installs_with_pip_from_the_repo_folder(stack: Stack, tmp_path: Path) -> None:
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["--no-deps", "--no-build-isolation", "--target", str(target), "clients/python"]
    subprocess.run(pip, cwd=ROOT, check=True, timeout=120, capture_output=True)
    script = (
        "import saxgateway, saxgateway_client, sys\n"
        "from saxgateway.v1 import gateway_pb2 as pb\n"
        "assert saxgateway.__file__.startswith(sys.argv[2]), saxgateway.__file__\n"
        "with saxgateway_client.Client(sys.argv[1]) as c:\n"
        "    print(c.call('GetInfo', pb.GetInfoRequest()).message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, stack.grpc_address, str(target)],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "HTTP Server for SAX Client\n"


def test_a_call_on_a_closed_client_is_its_cancelled_error(stack: Stack) -> None:
    # grpc raised ValueError ("Cannot invoke RPC on closed channel!"), which no
    # `except SaxGatewayError` caught, where the README says every failure is one.
    client = Client(stack.grpc_address, timeout=30)
    client.close()
    with pytest.raises(CancelledError, match="Channel closed!"):
        client.generate("/sax/test/closed", "q")
    with pytest.raises(CancelledError, match="Channel closed!"):
        next(client.generate_stream("/sax/test/closed", "q"))
