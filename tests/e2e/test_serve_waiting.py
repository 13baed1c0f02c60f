"""`saxgw serve` in front of a cell that is not there yet: it waits quietly, and SIGTERM stops
it cleanly with status 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.cli.admin import NO_CELLS
from gateway.launch.processes import free_port, port_open


def _healthz_times(log: Path) -> list[datetime]:
    """When Envoy's access log saw /healthz (its JSON lines; Envoy's own lines are text)."""
    times = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("{") and '"/healthz"' in line:
            times.append(datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00")))
    return times


def test_waiting_for_the_cell_polls_healthz_once_a_second(tmp_path: Path) -> None:
    root, logs = tmp_path / "sax-root", tmp_path / "logs"
    root.mkdir()  # a SAX_ROOT with no cell in it: /healthz stays 503
    port = free_port()
    ports = ["--port", str(port), "--envoy-admin-port", str(free_port())]
    ports += ["--gateway-ports", str(free_port()), "--ops-port", "0", "--log-dir", str(logs)]
    stderr = tmp_path / "stderr"
    # A host whose local time is not UTC (9 h ahead): every time logged is still UTC.
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", *ports],
            stdout=subprocess.DEVNULL,
            stderr=err,
            # The root as an operator who exported it for saxutil gives it: no --sax-root.
            env={**os.environ, "TZ": "Asia/Tokyo", "SAX_ROOT": str(root)},
        )
    try:
        deadline = time.monotonic() + 120
        while len(_healthz_times(logs / "envoy.log")) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, f"saxgw serve exited: {stderr.read_text()}"
            time.sleep(0.5)
        # The CLI through Envoy: empty tables, then what is wrong (before: the tables alone,
        # exit 0, as for a cell without models).
        for command, status in (("ls", 0), ("stats", 1)):
            argv = [sys.executable, "-m", "gateway.cli", "--gateway", f"127.0.0.1:{port}"]
            done = subprocess.run([*argv, command], capture_output=True, text=True, timeout=60)
            assert (done.returncode, done.stderr) == (status, NO_CELLS + "\n"), command
    finally:
        proc.send_signal(signal.SIGTERM)
        stopped = datetime.now(UTC)
        status = proc.wait(timeout=60)
    assert status == 0
    assert not port_open(f"127.0.0.1:{port}")  # Envoy went with it
    # With --log-dir (auto: JSON), Envoy's own lines are JSON too, its SIGTERM warning among
    # them; before, they were spdlog's text between the JSON access log lines.
    lines = [json.loads(line) for line in (logs / "envoy.log").read_text().splitlines()]
    [sigterm] = [line for line in lines if "ENVOY_SIGTERM" in line.get("message", "")]
    # Envoy's own lines said local time with a Z (spdlog's clock): 9 h off here.
    logged = datetime.fromisoformat(sigterm.pop("time").replace("Z", "+00:00"))
    assert abs((logged - stopped).total_seconds()) < 30, (logged, stopped)
    assert sigterm == {
        "level": "warning",
        "logger": "envoy.main",
        "message": "caught ENVOY_SIGTERM",
    }
    # Why the gateway is not serving names the root it looks in: one taken from the
    # environment, as here, is nowhere else in its log (it said "no cell under SAX_ROOT").
    health = [
        json.loads(line)
        for line in (logs / "gateway-0.log").read_text().splitlines()
        if "health: NOT_SERVING" in line
    ]
    assert [(line["level"], line["message"]) for line in health][:1] == [
        (
            "WARNING",
            f"health: NOT_SERVING (no admin answers: no cell under SAX_ROOT {root}; "
            "no replicas are on record)",
        )
    ]
    times = _healthz_times(logs / "envoy.log")
    assert len(times) >= 4, "Envoy never logged a /healthz"
    # Before: every 50 ms while the cell was down, ~20 access log lines a second.
    span = (times[-1] - times[0]).total_seconds()
    assert len(times) <= span + 2, f"{len(times)} /healthz in {span:.1f} s"
