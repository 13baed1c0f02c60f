"""What `saxgw up` asks a gateway once it is up (gateway/launch/readiness.py), of real
gateway processes: no answer is None (ask again), never "no models restored" (a live gateway
listing the models it restored: tests/e2e/test_up.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.launch.processes import free_port, port_open
from gateway.launch.readiness import restored_models
from tests.integration._cell_fixtures import eventually


def test_no_gateway_is_no_answer() -> None:
    assert restored_models(f"127.0.0.1:{free_port()}", "/sax/test") is None


async def test_a_hung_gateway_is_no_answer(tmp_path: Path) -> None:
    # Before, both were []: `saxgw up` took a gateway that did not answer for one that had
    # restored nothing, and never printed the models it had restored.
    port = free_port()
    argv = ["gateway", "--host", "127.0.0.1", "--port", str(port), "--sax-root", str(tmp_path)]
    with (tmp_path / "gateway.log").open("w") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv], stderr=log)
    try:

        async def listening() -> bool:
            return port_open(f"127.0.0.1:{port}")

        await eventually(listening, timeout=30)
        os.kill(gateway.pid, signal.SIGSTOP)
        try:
            assert restored_models(f"127.0.0.1:{port}", "/sax/test") is None
        finally:
            os.kill(gateway.pid, signal.SIGCONT)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
