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
