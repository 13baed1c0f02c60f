"""A process of `saxgw up` that hangs (SIGSTOP: alive, its connections open, nothing answered)
is killed by the supervisor's watchdog and restarted, and calls through Envoy's port succeed
again. Before, it was never restarted: only an exit was, and every call stalled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.launch.ports import listener_pid
from tests.faults._saxgw import alive, start_saxgw, stop_saxgw, up_args, wait_banner
from tests.faults.conftest import answers, publish

MODEL = "/sax/test/watched"
# Low, for a short test (the defaults: every 2 s, 2 s, 3 failures): a hang is found after
# about PROBE_FAILURES * max(PROBE_INTERVAL, PROBE_TIMEOUT) s.
CONFIG = """
supervisor:
  probe_interval: 0.5
  probe_timeout: 1
  probe_failures: 2
"""
# Found, killed, restarted and ready: ~2 s + 1 s + the gateway's start (~2 s, more on a
# loaded machine).
BACK_WITHIN = 30.0


@dataclass
class Watched:
    saxgw: subprocess.Popen[str]
    ports: dict[str, int]
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['--port']}"

    def log(self) -> str:
        return self.stderr.read_text()


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    base = tmp_path_factory.mktemp("watchdog")
    config = base / "saxgw.yaml"
    config.write_text(CONFIG)
    args, ports = up_args(base)
    stderr = base / "saxgw.err"
    with stderr.open("w") as err:
        saxgw = start_saxgw([*args, f"--config={config}"], base, stderr=err)
    try:
        # Its supervisor runs, and no longer asks gateway-0 for restored models: a call that
        # holds its loop (and so its ticks) up to 5 s while that gateway hangs.
        wait_banner(saxgw)
        running = Watched(saxgw, ports, stderr)
        with httpx.Client(base_url=running.url, timeout=30) as http:
            publish(http, MODEL, text="still here")
        yield running
    finally:
        stop_saxgw(saxgw)


def _stop_and_wait_for_restart(watched: Watched, port: int) -> tuple[int, float]:
    """SIGSTOPs what listens on ``port``; waits until another process listens there and a
    call through Envoy succeeds. Returns the stopped pid and how long that took."""
    pid = listener_pid(port)
    assert pid is not None
    assert answers(watched.url, MODEL)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        while listener_pid(port) in (None, pid) or not answers(watched.url, MODEL):
            assert watched.saxgw.poll() is None, watched.log()
            assert time.monotonic() - stopped < BACK_WITHIN, (
                f"not restarted within {BACK_WITHIN:.0f} s:\n{watched.log()}"
            )
            time.sleep(0.1)
        took = time.monotonic() - stopped
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a failed test leaves nothing stopped
    return pid, took


def test_a_stopped_gateway_is_killed_and_restarted(watched: Watched) -> None:
    port = watched.ports["--gateway-ports"]
    pid, took = _stop_and_wait_for_restart(watched, port)
    assert not alive(pid)
    log = watched.log()
    assert (
        f"saxgw: gateway-0 (pid {pid}) is hung: 2 health probes in a row failed (the last: "
        f"grpc.health.v1 Check at 127.0.0.1:{port}: no answer within 1 s); killing it with "
        "SIGKILL\n"
    ) in log
    assert f"saxgw: gateway-0 (pid {pid}) exited with status -9; restarting it in" in log
    assert took > 1.5  # found by its probes (2 failed, 0.5 s apart), not at once


def test_a_stopped_envoy_is_killed_and_restarted(watched: Watched) -> None:
    pid, took = _stop_and_wait_for_restart(watched, watched.ports["--port"])
    assert not alive(pid)
    admin = watched.ports["--envoy-admin-port"]
    log = watched.log()
    assert (
        f"saxgw: envoy (pid {pid}) is hung: 2 health probes in a row failed (the last: "
        f"GET http://127.0.0.1:{admin}/ready: no answer within 1 s); killing it with SIGKILL\n"
    ) in log
    assert f"saxgw: envoy (pid {pid}) exited with status -9; restarting it in" in log
    assert took > 1.5


pytestmark = pytest.mark.timeout(180)
