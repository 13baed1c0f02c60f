"""The ops server over a real socket: /metrics in Prometheus text, nothing else, and Envoy
reported down (rather than the scrape failing) when its admin does not answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.launch.processes import free_port
from gateway.ops import OpsSettings, start


@pytest.fixture
def ops_url(tmp_path: Path) -> Iterator[str]:
    dead_envoy = f"127.0.0.1:{free_port()}"
    settings = OpsSettings(port=0, metrics_dir=str(tmp_path), envoy_admin=dead_envoy)
    server = start(settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_metrics_is_prometheus_text_and_reports_envoy_down(ops_url: str) -> None:
    response = httpx.get(ops_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text.endswith("saxgw_envoy_up 0\n")


def test_other_paths_are_not_found(ops_url: str) -> None:
    assert httpx.get(ops_url + "/", timeout=10).status_code == 404
    assert httpx.get(ops_url + "/stats", timeout=10).status_code == 404


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "prom.localhost", "[::1]"])
def test_a_loopback_ops_port_answers_loopback_names(ops_url: str, host: str) -> None:
    port = ops_url.rsplit(":", 1)[1]
    response = httpx.get(ops_url + "/metrics", headers={"host": f"{host}:{port}"}, timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_loopback_ops_port_refuses_other_host_names(ops_url: str, host: str) -> None:
    # A page at http://evil.example:8889 whose name then points at 127.0.0.1 (DNS
    # rebinding) read the metrics: client ids, model names, call counts.
    port = ops_url.rsplit(":", 1)[1]
    response = httpx.get(ops_url + "/metrics", headers={"host": f"{host}:{port}"}, timeout=10)
    assert response.status_code == 421
    assert "DNS rebinding" in response.text
    assert "saxgw_" not in response.text
