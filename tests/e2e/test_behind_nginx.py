"""The gateway behind a real nginx with the reverse-proxy config people write first:
`proxy_pass` and nothing else. nginx then speaks HTTP/1.0 to Envoy (proxy_http_version's
default) and buffers replies (proxy_buffering on), which held every SSE event back until the
stream ended; Envoy's `x-accel-buffering: no` on stream replies turns nginx's buffering off.
nginx is Debian's, installed by `make test` (`make nginx`); tests/e2e/test_stream_keepalive.py
puts one with a short `proxy_read_timeout` in front of a stream slow to begin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._nginx import nginx as proxy
from tests.e2e._published import TEST_LM, published

WORDS = ["one", " two", " three", " four", " five"]
DELAY_S = 0.3  # before each token: the model spends 4 x 0.3 s between its first and last
# Buffered, the events all arrive together at the end; streamed, the first arrives at least
# 1.2 s before the last (a loaded machine only stretches that), so half of it is the bar.
MIN_SPREAD_S = (len(WORDS) - 1) * DELAY_S / 2


@pytest.fixture(scope="module")
def nginx(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx in front of the stack's public port, as people configure it first; its URL."""
    with proxy(stack.http_url, tmp_path_factory.mktemp("nginx")) as url:
        yield url


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    overrides = {"text": "".join(WORDS), "delay_ms": str(int(DELAY_S * 1000))}
    with published(stack, "/sax/test/behind-nginx", TEST_LM, overrides) as model:
        yield model


def _events(response: httpx.Response) -> Iterator[tuple[float, str]]:
    """Yields (arrival time, data) as each SSE event arrives."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.monotonic(), line.removeprefix("data: ")
        else:
            assert line == "", line


def _unary_replies(base: str, model: str) -> list[tuple[int, str, object]]:
    """Status, content type and JSON of a `POST /generate` and a `GET /listcells` to ``base``."""
    with httpx.Client(base_url=base, timeout=30) as http:
        replies = [
            http.post("/generate", json={"model": model, "query": "q"}),
            http.get("/listcells"),
        ]
    return [(r.status_code, r.headers["content-type"], r.json()) for r in replies]


def test_unary_calls_get_the_answers_they_get_directly(
    stack: Stack, nginx: str, model: str
) -> None:
    direct = _unary_replies(stack.http_url, model)
    assert _unary_replies(nginx, model) == direct
    text = {"text": "".join(WORDS), "score": pytest.approx(-0.5)}
    assert direct == [
        (200, "application/json", {"texts": [text]}),
        (200, "application/json", {"cells": ["/sax/test"]}),
    ]


def test_an_sse_stream_arrives_event_by_event(nginx: str, model: str) -> None:
    with (
        httpx.Client(base_url=nginx, timeout=30) as http,
        http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        arrivals, data = zip(*_events(response), strict=True)
    events = [json.loads(d) for d in data]
    assert [delta["text"] for e in events for delta in e["deltas"]] == WORDS
    assert events[-1]["done"] is True
    assert events[-1]["texts"] == [{"text": "".join(WORDS), "score": pytest.approx(-0.5)}]
    assert arrivals[-2] - arrivals[0] >= MIN_SPREAD_S, arrivals  # the last token's event
    # nginx passes this one on (x-accel-buffering is for nginx itself, which drops it).
    assert response.headers["cache-control"] == "no-cache"


def test_an_openai_stream_arrives_chunk_by_chunk(nginx: str, model: str) -> None:
    body = {"model": model, "prompt": "q", "stream": True}
    with (
        httpx.Client(base_url=nginx, timeout=30) as http,
        http.stream("POST", "/v1/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = list(_events(response))
    assert events[-1][1] == "[DONE]"
    chunks = [(at, json.loads(d)["choices"][0]) for at, d in events[:-1]]
    tokens = [(at, c["text"]) for at, c in chunks if c["text"]]
    assert [text for _, text in tokens] == WORDS
    assert chunks[-1][1]["finish_reason"] == "stop"
    assert tokens[-1][0] - tokens[0][0] >= MIN_SPREAD_S, tokens
