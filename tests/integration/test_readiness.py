"""What `saxgw up` asks a gateway once it is up (gateway/launch/readiness.py), of real
gateway processes: no answer is None (ask again), never "no models restored" (a live gateway
listing the models it restored: tests/e2e/test_up.py)."""

from __future__ import annotations

from pathlib import Path

from gateway.launch.processes import free_port
from gateway.launch.readiness import restored_models
from tests._stacks import cell_less_gateway, stopped


def test_no_gateway_is_no_answer() -> None:
    assert restored_models(f"127.0.0.1:{free_port()}", "/sax/test") is None


def test_a_hung_gateway_is_no_answer(tmp_path: Path) -> None:
    # Before, both were []: `saxgw up` took a gateway that did not answer for one that had
    # restored nothing, and never printed the models it had restored.
    with cell_less_gateway(tmp_path) as (gateway, port), stopped(gateway.pid):
        assert restored_models(f"127.0.0.1:{port}", "/sax/test") is None
