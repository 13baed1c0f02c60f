"""The supervisor's watchdog against real servers: a child slow to start is left to start, one
that hangs (SIGSTOP) is killed and restarted, one that never answers is killed once its start
grace is over, and `tick` never waits for a probe."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.launch.probes import http_probe
from gateway.launch.processes import ProcessGroup, free_port, port_open
from gateway.launch.supervisor import RestartSettings, Supervisor

# An HTTP server that starts listening after a delay; it answers GET with 501, an answer.
SERVER = (
    "import http.server, sys, time; time.sleep(float(sys.argv[2])); "
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), "
    "http.server.BaseHTTPRequestHandler).serve_forever()"
)
# A probe of a stopped server waits its whole timeout: a tick that waited for one would take
# that long, which a tick that spawns a process (0.12 s once, on a loaded host) must not reach.
FAST = RestartSettings(
    first_delay=0.1, probe_interval=0.1, probe_timeout=1.0, probe_failures=2, start_grace=10
)


def _ticks(supervisor: Supervisor, until: Callable[[], bool], timeout: float) -> list[float]:
    """Ticks every 20 ms until ``until()``; returns how long each tick took."""
    took = []
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        started = time.monotonic()
        supervisor.tick()
        took.append(time.monotonic() - started)
        time.sleep(0.02)
    return took


def _answered(supervisor: Supervisor, name: str, pid: int) -> bool:
    """Whether a probe of process ``pid`` had its answer: it is ready, no longer starting."""
    watch = supervisor._watchdog._watches.get(name)
    return watch is not None and watch.pid == pid and watch.answered


def test_a_slow_start_is_waited_for_and_a_hang_is_killed(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    group = ProcessGroup(grace=5)
    argv = [sys.executable, "-c", SERVER, str(port), "1"]
    first = group.start("server", argv, log_path=str(tmp_path / "server.log"))
    group.wait_until("server", lambda: port_open(address), 30)  # as Stack starts children
    lines: list[str] = []
    supervisor = Supervisor(
        group, FAST, report=lines.append, probes={"server": http_probe(address, "/")}
    )
    try:
        os.kill(first.pid, signal.SIGKILL)
        # Restarted; for its first second nothing listens: ~10 probes refused, and no kill.
        _ticks(supervisor, lambda: supervisor.restarts("server") == 1, 10)
        second = dict(group.children)["server"]
        _ticks(supervisor, lambda: port_open(address), 10)
        # Ready, once a probe had its answer; a hang before that would count as a slow start
        # (found only after the start grace: half a second of ticks, which the test gave it,
        # had no answer on a loaded host).
        _ticks(supervisor, lambda: _answered(supervisor, "server", second.pid), 10)
        assert second.poll() is None
        os.kill(second.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        took = _ticks(supervisor, lambda: supervisor.restarts("server") == 2, 10)
        found_after = time.monotonic() - stopped
    finally:
        supervisor.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(second.pid, signal.SIGCONT)
        group.stop()
    assert lines[:2] == [
        f"saxgw: server (pid {first.pid}) exited with status -9; restarting it in 0.1 s",
        f"saxgw: restarted server (pid {second.pid})",
    ]
    assert lines[2] == (
        f"saxgw: server (pid {second.pid}) is hung: 2 health probes in a row failed (the "
        f"last: GET http://{address}/: no answer within 1 s); killing it with SIGKILL"
    )
    assert (
        lines[3]
        == f"saxgw: server (pid {second.pid}) exited with status -9; restarting it in 0.2 s"
    )
    assert second.returncode == -signal.SIGKILL
    assert 2 <= found_after < 6.5  # two probes of 1 s, then the restart's 0.2 s
    # A tick that waited for a probe of the stopped server would take its whole 1 s; a tick
    # that restarts the server spawns a process, which read 0.12 s once on a loaded host (the
    # probes' 0.3 s before, with 0.25 s the bound, left it 0.13 s).
    assert max(took) < 0.9, took


def test_a_child_that_never_answers_is_killed_after_its_start_grace(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    group = ProcessGroup(grace=5)
    lines: list[str] = []
    settings = RestartSettings(
        first_delay=0.1, probe_interval=0.1, probe_timeout=0.3, probe_failures=2, start_grace=1
    )
    supervisor = Supervisor(
        group, settings, report=lines.append, probes={"mute": http_probe(address, "/")}
    )
    try:
        mute = group.start("mute", [sys.executable, "-c", "import time; time.sleep(60)"])
        started = time.monotonic()
        _ticks(supervisor, lambda: mute.poll() is not None, 10)
        killed_after = time.monotonic() - started
    finally:
        supervisor.close()
        group.stop()
    assert lines[0] == (
        f"saxgw: mute (pid {mute.pid}) is hung: 2 health probes in a row failed (the last: "
        f"GET http://{address}/: [Errno 111] Connection refused); killing it with SIGKILL"
    )
    assert 1 <= killed_after < 5
