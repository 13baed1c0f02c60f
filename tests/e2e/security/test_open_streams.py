"""Streams anyone may open (grpc.health.v1 Watch, an open path) cannot take the streams of
callers with a credential.

Every stream route, Health/Watch among them, drew on one Envoy budget (`max_streams`, 12,000),
and the OpenAI routes run there too, streaming or not. A caller without a credential may hold
100 Watch streams per address, so 120 addresses filled it and every OpenAI call and stream
of every client got 503 `overflow` until they let go. Here the budget is 20 and 5 addresses
hold 5 Watch streams each: the calls of a client with a key must go on.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import h2.config
import h2.connection
import httpx
import pytest
import yaml

from gateway.cli._edge import envoy_settings
from gateway.configfile import load_config
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import cell_settings, gateway_settings, healthy_stack, logs_dir, loopback_envoy
from tests.e2e._published import TEST_LM, published
from tests.e2e.security.conftest import OPS, OPS_KEY

pytestmark = pytest.mark.e2e

MAX_STREAMS = 20
PER_ADDRESS = 5
#: Peers other than 127.0.0.1, each its own anonymous client.
ADDRESSES = [f"127.0.0.{i}" for i in range(2, 7)]
MODEL = "/sax/test/open-streams"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("open-streams")
    config_file = base / "saxgw.yaml"
    keys = [{"key": OPS_KEY, "client": "ops", "roles": ["admin", "data"]}]
    config_file.write_text(yaml.safe_dump({"auth": {"api_keys": keys}}))
    settings = StackSettings(
        gateway=gateway_settings(
            base, config_file=str(config_file), max_streams_per_client=PER_ADDRESS
        ),
        cell=cell_settings(base, servers=1),
        gateway_ports=(free_port(),),
        envoy=envoy_settings(
            loopback_envoy(max_streams=MAX_STREAMS), load_config(Path(config_file)).edge
        ),
        log_dir=str(logs_dir(base)),
    )
    with healthy_stack(settings, "open streams stack") as running:
        yield running


def _watch(address: str, port: int, streams: int) -> socket.socket:
    """A connection from ``address`` holding ``streams`` grpc.health.v1 Watch calls, no key."""
    conn = socket.socket()
    conn.bind((address, 0))
    conn.connect(("127.0.0.1", port))
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2c.initiate_connection()
    for _ in range(streams):
        stream = h2c.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":path", "/grpc.health.v1.Health/Watch"),
            (":scheme", "http"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        h2c.send_headers(stream, headers)
        h2c.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)  # an empty request
    conn.sendall(h2c.data_to_send())
    return conn


def _calls_go_on(http: httpx.Client) -> None:
    completion = http.post(
        "/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2}
    )
    assert completion.status_code == 200, completion.text
    with http.stream("POST", "/generate_stream", json={"model": MODEL, "query": "hi"}) as stream:
        assert stream.status_code == 200
        assert "data: " in stream.read().decode()


def test_anonymous_watch_streams_leave_the_keyed_callers_streams(stack: Stack) -> None:
    port = int(stack.http_url.rsplit(":", 1)[1])
    with (
        published(stack, MODEL, TEST_LM, {"text": "a b"}, headers=OPS),
        httpx.Client(base_url=stack.http_url, headers=OPS, timeout=20) as http,
        ExitStack() as held,
    ):
        _calls_go_on(http)
        for address in ADDRESSES:
            held.enter_context(closing(_watch(address, port, PER_ADDRESS)))
        assert len(ADDRESSES) * PER_ADDRESS > MAX_STREAMS
        time.sleep(1)  # the Watch calls reach the gateway and stay open
        _calls_go_on(http)
