"""`saxgw gateway --log-format json` as a real process: every line it writes is a JSON object,
so a log shipper (a Kubernetes node's, reading the container's output) parses all of them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.launch.processes import free_port


@pytest.mark.parametrize(("host", "shown"), [("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")])
def test_every_line_of_a_json_logging_gateway_is_json(
    tmp_path: Path, host: str, shown: str
) -> None:
    # It printed "gateway gRPC listening on ADDRESS" to stdout as a plain line, among the JSON
    # ones; now that line (which scripts wait for) is a record in the log format too. An IPv6
    # address is in brackets in both lines (one said "on ::1:50051").
    (tmp_path / "sax-root").mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "gateway", f"--host={host}", f"--port={port}"]
    argv.append("--log-format=json")
    proc = subprocess.Popen(
        [*argv, f"--sax-root={tmp_path / 'sax-root'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines(keepends=True)
    assert proc.returncode == 0
    records = [json.loads(line) for line in lines]  # each one parses
    assert all(
        isinstance(r, dict) and {"time", "level", "logger", "message"} <= r.keys() for r in records
    )
    messages = [r["message"] for r in records]
    assert f"gateway serving saxgateway.v1.SaxGateway on {shown}:{port}" in messages
    assert f"gateway gRPC listening on {shown}:{port}" in messages
    assert "shutting down; in-flight calls get 10.0 s" in messages
