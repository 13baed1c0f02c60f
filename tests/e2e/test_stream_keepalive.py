"""Streams whose tokens are slow to come, through the real Envoy (and a real nginx): after
``stream_keepalive`` without sending anything an OpenAI stream sends an SSE comment (before its
first event or between two), and a SaxGateway stream still waiting for its first token its
headers, so that clients and proxies whose read timeout is shorter than the wait keep waiting;
the first one commits the 200, and a failure from then on is the stream's in-band error. The
setting is the whole stack's, so this module runs a stack of its own with a short one."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import cell_settings, gateway_settings, healthy_stack, logs_dir, loopback_envoy
from tests.e2e._nginx import nginx
from tests.e2e._openai import CHATML, node_sdk, write_config
from tests.e2e._published import TEST_LM, published, request_info

KEEPALIVE_S = 0.5
FIRST_TOKEN_S = 1.5  # the slow model's one token comes after this long
READ_TIMEOUT_S = 1.0  # the clients': longer than KEEPALIVE_S, shorter than FIRST_TOKEN_S
TIMEOUT = httpx.Timeout(30, read=READ_TIMEOUT_S)
SLOW = CHATML  # configured with the chatml template (tests/e2e/_openai.py), here slow
BUSY = "/sax/test/oai-busy"
BROKEN = "/sax/test/oai-fails"
QUICK = "/sax/test/quick"
GAPS = "/sax/test/gaps"  # two tokens, FIRST_TOKEN_S apart
QUEUED = "/sax/test/queued"  # one call at a time (the stack's config), three tokens a second apart
COMMENT = b": waiting\n\n"
OVER = "call to /sax/test/oai exceeded its deadline"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose streams commit after KEEPALIVE_S, with the slow model and two that fail
    at once; its overloaded replicas are not retried, so that a 429 comes at once too."""
    base = tmp_path_factory.mktemp("keepalive")
    config = write_config(base)
    with config.open("a") as more:  # one call of QUEUED at a time, the others queued
        more.write(f"quotas:\n  models:\n    {QUEUED}: {{max_in_flight: 1, max_queued: 4}}\n")
    gateway = gateway_settings(base, config_file=str(config), stream_keepalive=KEEPALIVE_S)
    client = dataclasses.replace(gateway.client, overloaded_after=0)
    settings = StackSettings(
        gateway=dataclasses.replace(gateway, client=client),
        cell=cell_settings(base, servers=1, poll_interval=0.3),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(base)),
    )
    with (
        healthy_stack(settings, "keepalive stack") as running,
        published(running, SLOW, TEST_LM, {"text": "Paris", "delay_ms": "1500"}),
        published(running, QUICK, TEST_LM, {"text": "Paris is", "delay_ms": "300"}),
        published(running, GAPS, TEST_LM, {"text": "Paris is", "delay_ms": "1500"}),
        published(
            running, BUSY, TEST_LM, {"fail_after_tokens": "0", "fail_code": "RESOURCE_EXHAUSTED"}
        ),
        published(running, BROKEN, TEST_LM, {"fail_after_tokens": "0", "fail_code": "INTERNAL"}),
    ):
        yield running


def _sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=stack.http_url + "/v1",
        api_key="x",
        max_retries=0,
        timeout=openai.Timeout(30, read=READ_TIMEOUT_S),
    )


def _chat(stream: bool = True, **fields: Any) -> dict[str, Any]:
    return {
        "model": SLOW,
        "messages": [{"role": "user", "content": "q"}],
        "stream": stream,
        **fields,
    }


def _comments_then(body: bytes) -> tuple[int, bytes]:
    """How many keep-alive comments ``body`` begins with, and the rest."""
    count, rest = 0, body
    while rest.startswith(COMMENT):
        count, rest = count + 1, rest[len(COMMENT) :]
    return count, rest


def test_sdks_with_a_read_timeout_shorter_than_the_first_token_read_the_stream(
    stack: Stack,
) -> None:
    started = time.monotonic()
    with _sdk(stack) as sdk:
        chat = sdk.chat.completions.create(**_chat())
        assert "".join(c.choices[0].delta.content or "" for c in chat) == "Paris"
        completion = sdk.completions.create(model=SLOW, prompt="q", stream=True)
        assert "".join(c.choices[0].text for c in completion) == "Paris"
        # And between two tokens as far apart.
        completion = sdk.completions.create(model=GAPS, prompt="q", stream=True)
        assert "".join(c.choices[0].text for c in completion) == "Paris is"
        with sdk.responses.stream(model=SLOW, input="q") as responses:
            types = [event.type for event in responses]
            assert responses.get_final_response().output_text == "Paris"
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert time.monotonic() - started >= 5 * FIRST_TOKEN_S  # each waited longer than its timeout

    # The Node SDK's timeout covers the wait for the response's headers.
    script = (
        'import OpenAI from "openai";'
        "const client = new OpenAI({baseURL: process.argv[1], apiKey: 'x', maxRetries: 0,"
        f" timeout: {int(READ_TIMEOUT_S * 1000)}}});"
        f"const stream = await client.chat.completions.create({json.dumps(_chat())});"
        "let text = ''; for await (const c of stream) text += c.choices[0].delta.content ?? '';"
        "console.log(JSON.stringify({text}));"
    )
    assert node_sdk(script, stack.http_url + "/v1") == {"text": "Paris"}

    # On the wire: comments, each time KEEPALIVE_S passes, then the stream it would have been.
    with httpx.Client(base_url=stack.http_url, timeout=TIMEOUT) as http:
        response = http.post("/v1/chat/completions", json=_chat())
    assert (response.status_code, response.headers["content-type"]) == (200, "text/event-stream")
    comments, rest = _comments_then(response.content)
    assert comments >= 2, response.content
    events = [json.loads(e.removeprefix(b"data: ")) for e in rest.split(b"\n\n")[:-2]]
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "Paris", None]
    assert rest.endswith(b"data: [DONE]\n\n")

    # A stream whose tokens come sooner than that is as it was.
    quick = {"model": QUICK, "prompt": "q", "stream": True}
    with httpx.Client(base_url=stack.http_url, timeout=TIMEOUT) as http:
        body = http.post("/v1/completions", json=quick).content
    assert body.startswith(b"data: {") and COMMENT not in body, body

    # SaxGateway's SSE stream sends its headers after KEEPALIVE_S, its events as before.
    started = time.monotonic()
    with (
        httpx.Client(base_url=stack.http_url, timeout=30) as http,
        http.stream("POST", "/generate_stream", json={"model": SLOW, "query": "q"}) as response,
    ):
        headers_after = time.monotonic() - started
        chunks = response.iter_bytes()
        first = next(chunks)
        token_after = time.monotonic() - started
        body = first + b"".join(chunks)
    assert response.status_code == 200
    # The headers came a keep-alive after the start, not with the token a second later. The
    # gap, not a bound on the headers' own time, which a loaded machine took past (1.48 s).
    assert headers_after >= KEEPALIVE_S, headers_after
    gap = token_after - headers_after
    assert gap >= (FIRST_TOKEN_S - KEEPALIVE_S) / 2, (headers_after, token_after)
    assert [json.loads(e.removeprefix(b"data: ")) for e in body.split(b"\n\n")[:-1]] == [
        {
            "deltas": [{"index": 0, "backtrack": 0, "text": "Paris", "score": -0.1}],
            "done": False,
            "texts": [],
        },
        {"deltas": [], "done": True, "texts": [{"text": "Paris", "score": -0.1}]},
    ]


def test_a_native_stream_waiting_in_its_models_queue_sends_its_headers_too(stack: Stack) -> None:
    # Its wait for a slot was outside the keep-alive: nothing came until the stream ahead
    # ended, and a proxy or client read timeout gave up on it first.
    text = {"text": "Paris is capital", "delay_ms": "1000"}
    body = {"model": QUEUED, "query": "q"}

    def read_ahead(http: httpx.Client) -> tuple[bytes, float]:
        return http.post("/generate_stream", json=body).content, time.monotonic()

    with (
        published(stack, QUEUED, TEST_LM, text),
        httpx.Client(base_url=stack.http_url, timeout=30) as first,
        httpx.Client(base_url=stack.http_url, timeout=30) as second,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        ahead = pool.submit(read_ahead, first)  # holds the model's one slot for 3 s
        time.sleep(KEEPALIVE_S)
        with second.stream("POST", "/generate_stream", json=body) as queued:
            headers_at = time.monotonic()
            queued_body = queued.read()
        ahead_body, ahead_ended_at = ahead.result()
    assert queued.status_code == 200
    assert headers_at < ahead_ended_at  # not only once the stream ahead had left the slot
    assert ahead_body == queued_body
    [answer] = json.loads(queued_body.split(b"\n\n")[-2].removeprefix(b"data: "))["texts"]
    assert answer["text"] == "Paris is capital"


def test_a_failure_after_the_stream_was_committed_is_its_in_band_error(stack: Stack) -> None:
    # A deadline between the first keep-alive and the first token.
    ends = {"grpc-timeout": "1200m"}
    with _sdk(stack) as sdk:
        with pytest.raises(openai.APIError) as failure:
            list(sdk.completions.create(model=SLOW, prompt="q", stream=True, extra_headers=ends))
        assert not isinstance(failure.value, openai.APIStatusError)  # in-band, after a 200
        assert failure.value.body == {
            "message": OVER,
            "type": "timeout_error",
            "param": None,
            "code": "timeout",
        }
        events = list(sdk.responses.create(model=SLOW, input="q", stream=True, extra_headers=ends))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    failed = events[-1].response  # type: ignore[union-attr]
    assert (failed.status, failed.output) == ("failed", [])
    assert failed.error is not None and failed.error.message == OVER

    with httpx.Client(base_url=stack.http_url, timeout=TIMEOUT) as http:
        response = http.post("/v1/chat/completions", json=_chat(), headers=ends)
        assert response.status_code == 200
        comments, rest = _comments_then(response.content)
        assert comments >= 1, response.content
        error = {"message": OVER, "type": "timeout_error", "param": None, "code": "timeout"}
        assert json.loads(rest.removeprefix(b"data: ")) == {"error": error}
        assert rest.endswith(b"}\n\n") and rest.count(b"\n\n") == 1

        # SaxGateway's stream ends with its in-band error event, as mid-stream.
        body = {"model": SLOW, "query": "q", "timeout": "1.2s"}
        response = http.post("/generate_stream", json=body, timeout=30)
    assert response.status_code == 200
    assert response.content.startswith(b"data: ") and response.content.endswith(b"\n\n")
    assert json.loads(response.content.removeprefix(b"data: ")) == {
        "deltas": [],
        "done": True,
        "texts": [],
        "error": {"code": 4, "message": OVER, "details": [request_info(response)]},
    }


def test_failures_before_the_first_keepalive_keep_their_http_status(stack: Stack) -> None:
    # The SDKs retry a 429 or a 5xx (here max_retries=0 shows the status each one raised).
    with _sdk(stack) as sdk:
        expected = [
            ("/sax/test/nope", openai.NotFoundError, 404, {}),
            (BUSY, openai.RateLimitError, 429, {}),
            (BROKEN, openai.InternalServerError, 500, {}),
            (SLOW, openai.BadRequestError, 400, {"n": 0}),
        ]
        for model, error, status, fields in expected:
            with pytest.raises(error) as failure:
                sdk.completions.create(model=model, prompt="q", stream=True, extra_body=fields)
            assert failure.value.status_code == status, model
    with httpx.Client(base_url=stack.http_url, timeout=TIMEOUT) as http:
        response = http.post("/generate_stream", json={"model": "/sax/test/nope", "query": "q"})
    assert (response.status_code, response.json()["code"]) == (404, 5)


def test_a_proxy_read_timeout_shorter_than_the_first_token_waits_it_out(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # nginx gives up on an upstream that sends nothing for proxy_read_timeout (504). Its
    # timer starts again with each read: the keep-alives (OpenAI), or the headers (SaxGateway).
    folder = tmp_path_factory.mktemp("nginx-read-timeout")
    with (
        nginx(stack.http_url, folder, "proxy_read_timeout 1400ms;") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        chat = http.post("/v1/chat/completions", json=_chat())
        native = http.post("/generate_stream", json={"model": SLOW, "query": "q"})
    assert chat.status_code == 200, chat.text
    assert chat.content.endswith(b"data: [DONE]\n\n") and b'"content": "Paris"' in chat.content
    assert native.status_code == 200, native.text
    assert native.content.endswith(b'"texts":[{"text":"Paris","score":-0.1}]}\n\n')


def _logs(stack: Stack) -> dict[str, str]:
    logs = Path(str(stack.settings.log_dir))
    return {log.name: log.read_text(errors="replace") for log in logs.glob("*.log")}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/generate_stream"])
def test_a_client_that_leaves_while_waiting_cancels_the_call_quietly(
    stack: Stack, path: str
) -> None:
    body = _chat() if path.startswith("/v1") else {"model": SLOW, "query": "q"}
    cancelled = re.compile(rf"stream cancelled model={re.escape(SLOW)} tokens_sent=0 at=[0-9.]+")
    before = len(cancelled.findall(_logs(stack)["cell.log"]))
    # No short read timeout: the client leaves itself, once it has the headers (a loaded host
    # sent them past READ_TIMEOUT_S once, still before the token).
    with (
        httpx.Client(base_url=stack.http_url, timeout=30) as http,
        http.stream("POST", path, json=body) as response,
    ):
        assert response.status_code == 200  # its keep-alive (or its headers) came
    deadline = time.monotonic() + 5
    while len(cancelled.findall(_logs(stack)["cell.log"])) == before:
        assert time.monotonic() < deadline, "the Sax call was not cancelled before its token"
        time.sleep(0.02)
    # At once, not at its first token: the pattern's tokens_sent=0 says it (a cancellation at
    # the token logs 1, if any), where a bound of 0.2 s on the log's time stood (good: a few
    # ms, 4 ms at worst loaded; bad: the token, about 1 s later).
    time.sleep(FIRST_TOKEN_S)  # whatever the wait's task would have logged by now
    errors = [
        line for name, text in _logs(stack).items() for line in text.splitlines() if "ERROR" in line
    ]
    assert errors == []
