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
from dataclasses import dataclass
from pathlib import Path

from gateway.launch.probes import Probe, http_probe
from gateway.launch.processes import ProcessGroup, free_port, port_open
from gateway.launch.supervisor import RestartSettings, Supervisor

# An HTTP server that starts listening after a delay; it answers GET with 501, an answer.
SERVER = (
    "import http.server, sys, time; time.sleep(float(sys.argv[2])); "
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), "
    "http.server.BaseHTTPRequestHandler).serve_forever()"
)
# A probe of a stopped server waits its whole timeout (1 s); ticks go on meanwhile.
FAST = RestartSettings(
    first_delay=0.1, probe_interval=0.1, probe_timeout=1.0, probe_failures=2, start_grace=10
)


@dataclass
class _Counted:
    """A probe that says which of its calls is out (0: none), so that a test sees ticks made
    while one was."""

    probe: Probe
    calls: int = 0
    out: int = 0

    def __call__(self, timeout: float) -> str | None:
        self.calls += 1
        self.out = self.calls
        try:
            return self.probe(timeout)
        finally:
            self.out = 0


def _ticks(
    supervisor: Supervisor, until: Callable[[], bool], timeout: float, probe: _Counted | None = None
) -> int:
    """Ticks every 20 ms until ``until()``; returns how many ticks began and ended while one
    and the same call of ``probe`` was out."""
    passed = 0
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        out = probe.out if probe is not None else 0
        supervisor.tick()
        passed += bool(out) and probe is not None and probe.out == out
        time.sleep(0.02)
    return passed


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
    probe = _Counted(http_probe(address, "/"))
    supervisor = Supervisor(group, FAST, report=lines.append, probes={"server": probe})
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
        passed = _ticks(supervisor, lambda: supervisor.restarts("server") == 2, 10, probe)
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
    # Ticks went on while a probe of the stopped server was out: a tick that waited for it
    # would end after it. Timed before (each tick under 0.9 s, where one that waited took the
    # probe's 1 s; a tick that spawns a process read 0.12 s once on a loaded host), it is
    # now a count: about 50 ticks in the two probes' 2 s on a quiet host; none if they waited.
    assert passed > 0


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
