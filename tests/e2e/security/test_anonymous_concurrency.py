"""`quotas.max_concurrent` without authentication: a caller without a client id is its
address, as for `quotas.rate` and the stream limit, so one anonymous caller cannot take the
calls of every other one. Two callers on two loopback addresses through a stack of its own
with two gateway processes (`saxgw up --workers 2`), which count each address together: no
credentials, one call in flight per client, for the stack. (Not 127.0.0.1: for that peer Envoy
writes its own host's address into x-forwarded-for, which differs from machine to machine.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import (
    FORWARDED,
    cell_settings,
    envoy_stat,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
    wait_forwarded,
)
from tests.e2e._published import TEST_LM, published, request_info

pytestmark = pytest.mark.e2e

SLOW = "/sax/test/anon-slow"
QUICK = "/sax/test/anon-quick"


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base: Path = tmp_path_factory.mktemp("anonymous-concurrency")
    config_file = base / "saxgw.yaml"
    config_file.write_text(yaml.safe_dump({"quotas": {"max_concurrent": 1}}))
    settings = StackSettings(
        gateway=gateway_settings(base, config_file=str(config_file)),
        cell=cell_settings(base, servers=1),
        gateway_ports=(free_port(), free_port()),
        envoy=envoy_settings(loopback_envoy(), load_config(config_file).edge),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "open stack") as running:
        yield running


def _caller(stack: Stack, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.http_url, timeout=30, transport=transport)


def _generate(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/generate", json={"model": model, "query": "q"})


def test_each_anonymous_address_has_its_own_calls_in_flight(open_stack: Stack) -> None:
    slow_model = {"text": "slow", "delay_ms": "4000"}
    with (
        published(open_stack, SLOW, TEST_LM, slow_model),
        published(open_stack, QUICK, TEST_LM, {"text": "quick"}),
        _caller(open_stack, "127.0.0.2") as first,
        _caller(open_stack, "127.0.0.3") as second,
    ):
        slow: list[httpx.Response] = []
        forwarded = envoy_stat(open_stack, FORWARDED)
        running = threading.Thread(target=lambda: slow.append(_generate(first, SLOW)))
        running.start()
        # The slow call holds 127.0.0.2's one slot once a quick call from there is refused
        # (sent once the slow one reached the gateway, so that no quick call takes the slot
        # before it).
        wait_forwarded(open_stack, forwarded)
        deadline = time.monotonic() + 3
        refused = _generate(first, QUICK)
        while refused.status_code == 200 and time.monotonic() < deadline:
            refused = _generate(first, QUICK)
        # Whichever gateway Envoy picks (round robin over one connection: both, in turn).
        again = [_generate(first, QUICK).status_code for _ in range(4)]
        # ...and meanwhile another anonymous address is served.
        served = _generate(second, QUICK)
        running.join()
        assert again == [429] * 4
        assert refused.status_code == 429, refused.text
        assert refused.json() == {
            "code": 8,
            "message": "client anonymous@127.0.0.2 has 1 calls in flight, its limit; retry later",
            "details": [request_info(refused)],
        }
        assert (served.status_code, served.json()) == (
            200,
            {"texts": [{"text": "quick", "score": pytest.approx(-0.1)}]},
        )
        assert slow[0].status_code == 200, slow[0].text
        assert _generate(first, QUICK).status_code == 200  # the slot is free again


def test_an_anonymous_caller_cannot_claim_another_address(open_stack: Stack) -> None:
    # The gateway counts an anonymous caller by the address Envoy hands it in
    # x-saxgw-client-address; a caller that sends that header itself is still its own peer,
    # on a unary route as on a stream's (a new address per call was a limit per call).
    slow_model = {"text": "slow", "delay_ms": "4000"}
    claimed = {"x-saxgw-client-address": "elsewhere"}
    with (
        published(open_stack, SLOW, TEST_LM, slow_model),
        published(open_stack, QUICK, TEST_LM, {"text": "quick"}),
        _caller(open_stack, "127.0.0.4") as caller,
    ):
        slow: list[httpx.Response] = []
        forwarded = envoy_stat(open_stack, FORWARDED)
        running = threading.Thread(target=lambda: slow.append(_generate(caller, SLOW)))
        running.start()
        wait_forwarded(open_stack, forwarded)
        deadline = time.monotonic() + 3
        body = {"model": QUICK, "query": "q"}
        refused = caller.post("/generate", json=body, headers=claimed)
        while refused.status_code == 200 and time.monotonic() < deadline:
            refused = caller.post("/generate", json=body, headers=claimed)
        running.join()
        assert refused.status_code == 429, refused.text
        assert refused.json() == {
            "code": 8,
            "message": "client anonymous@127.0.0.4 has 1 calls in flight, its limit; retry later",
            "details": [request_info(refused)],
        }
        assert slow[0].status_code == 200, slow[0].text
