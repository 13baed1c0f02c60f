"""Envoy shields callers: slow clients are cut off, long-lived streams have limits of their
own, oversized bodies stop at the edge, and /healthz tells when no gateway can take calls."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import openai
import pytest

from tests._stacks import stopped
from tests.e2e._bodies import envoy_error
from tests.faults.conftest import (
    MAX_REQUEST_BYTES,
    MAX_STREAMS_PER_CLIENT,
    REQUEST_HEADERS_TIMEOUT,
    Faults,
    publish,
    watches,
)


def test_slowloris_connection_is_closed(faults: Faults, http: httpx.Client) -> None:
    port = faults.stack.envoy.listen_port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
        closed_after = None
        for byte in b"X-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.5)
                if sock.recv(4096) == b"":
                    closed_after = time.monotonic() - started
                    break
                closed_after = time.monotonic() - started  # an error reply, then the close
                break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "a client sending headers at 2 bytes/s was never cut off"
    assert closed_after >= REQUEST_HEADERS_TIMEOUT * 0.9
    assert closed_after < REQUEST_HEADERS_TIMEOUT + 20


def test_one_client_cannot_starve_others_with_streams(faults: Faults, http: httpx.Client) -> None:
    model = "/sax/test/watched"
    publish(http, model)
    # The limit is the stack's: its two gateways count each client's streams together.
    assert len(faults.stack.settings.gateway_ports) == 2
    with watches(faults.url, model, MAX_STREAMS_PER_CLIENT + 6) as statuses:
        assert statuses == [200] * MAX_STREAMS_PER_CLIENT + [429] * 6, statuses
        # Unary calls have their own budget: they are still answered.
        for _ in range(5):
            response = http.post("/generate", json={"model": model, "query": "still here"})
            assert response.status_code == 200, response.text
        # The OpenAI face's streams count in the same slots: no way around the limit there.
        with openai.OpenAI(base_url=faults.url + "/v1", api_key="-", max_retries=0) as sdk:
            with pytest.raises(openai.RateLimitError) as refused:
                sdk.completions.create(model=model, prompt="q", stream=True)
            assert refused.value.body == {
                "message": f"client 127.0.0.1 already has {MAX_STREAMS_PER_CLIENT} streams or waits"
                " open, the limit per client; close some first",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
            assert sdk.completions.create(model=model, prompt="q").choices[0].text
        # Another client behind the load balancer Envoy trusts (limits.trusted_proxy_hops: 1)
        # has a budget of its own; claiming an address in a header of Envoy's own changes
        # nothing.
        behind = {"x-forwarded-for": "203.0.113.7", "x-saxgw-client-address": "198.51.100.1"}
        with httpx.stream("GET", f"{faults.url}/v1{model}:watch", headers=behind) as other:
            assert other.status_code == 200
        spoofed = {"x-saxgw-client-address": "198.51.100.1"}
        with httpx.stream("GET", f"{faults.url}/v1{model}:watch", headers=spoofed) as again:
            assert again.status_code == 429


def test_oversized_body_is_413_json_at_the_edge(faults: Faults, http: httpx.Client) -> None:
    body = b'{"model": "/sax/test/x", "query": "' + b"a" * (MAX_REQUEST_BYTES + 1) + b'"}'
    response = http.post("/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    # RESOURCE_EXHAUSTED, as gRPC reports an oversized message (gateway/launch/envoy.py).
    assert response.json() == envoy_error(response, 8, "Payload Too Large")


def test_healthz_is_503_while_no_gateway_can_take_calls(faults: Faults, http: httpx.Client) -> None:
    with contextlib.ExitStack() as hung:
        for port in faults.stack.settings.gateway_ports:
            # Hung, not dead (this stack's supervisor has no watchdog).
            hung.enter_context(stopped(faults.pid(port)))
        faults.wait_until(
            lambda: http.get("/healthz", timeout=5).status_code == 503, 60, "/healthz to say 503"
        )
        response = http.get("/healthz", timeout=5)
    assert response.status_code == 503
    down = "no gateway is healthy: none can take calls"
    assert response.json() == envoy_error(response, 14, down)
    faults.healthy()
