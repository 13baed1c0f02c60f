"""One of Envoy's worker threads stuck (stopped alone, with ptrace: the process runs, its admin
answers every probe, and each connection that worker accepted hangs) gets Envoy aborted by its
guard dog; the supervisor of `saxgw up` restarts it, and calls through Envoy's port succeed
again. Before, nothing saw it: the supervisor's watchdog and Kubernetes' liveness probe ask the
admin, which the main thread answers, and the worker's share of the connections hung for good.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.launch.supervisor import Supervisor
from gateway.restartconfig import RestartSettings
from tests._stacks import (
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
    tail_logs,
)
from tests.faults._threads import stopped_thread
from tests.faults.conftest import answers, publish

MODEL = "/sax/test/workerstuck"
KILL_TIMEOUT = 3.0  # EnvoySettings.kill_timeout, short for a short test (the default: 64 s)
KILL_JITTER = 1.0  # and its kill_jitter (the default: 5 s)
# The supervisor's watchdog as test_watchdog.py has it, quick to find a hung Envoy: it still
# never finds this one.
RESTART = RestartSettings(probe_interval=0.5, probe_timeout=1, probe_failures=2)
# Aborted after KILL_TIMEOUT and up to KILL_JITTER more (the guard dog looks every 0.2 s),
# restarted 0.5 s later, ready in a second or two, more on a loaded machine.
BACK_WITHIN = 30.0


@contextlib.contextmanager
def _supervised(base: Path) -> Iterator[tuple[Stack, Supervisor, list[str]]]:
    """A stack as `saxgw up` runs it, with two Envoy workers; its supervisor's reports."""
    settings = StackSettings(
        gateway=gateway_settings(base),
        cell=cell_settings(base, servers=1),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(kill_timeout=KILL_TIMEOUT, kill_jitter=KILL_JITTER, concurrency=2),
        log_dir=str(logs_dir(base)),
        restart=RESTART,
    )
    reports: list[str] = []
    with healthy_stack(settings, "the stack") as stack:
        supervisor = Supervisor(stack.group, RESTART, report=reports.append, probes=stack.probes())
        try:
            yield stack, supervisor, reports
        finally:
            supervisor.close()


def _healthz_on_new_connections(port: int, count: int) -> list[bytes]:
    """GET /healthz on ``count`` new connections at once: the status line each got within a
    second, b"" where none came."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        replies = dict.fromkeys(sockets, b"")
        deadline = time.monotonic() + 1
        while waiting := [s for s in sockets if not replies[s]]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock in select.select(waiting, [], [], left)[0]:
                replies[sock] = sock.recv(4096).split(b"\r\n")[0] or b"(closed)"
        return [replies[s] for s in sockets]


def test_a_stuck_worker_gets_envoy_aborted_and_restarted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    with _supervised(tmp_path) as (stack, supervisor, reports):
        with httpx.Client(base_url=stack.http_url, timeout=30) as http:
            publish(http, MODEL, text="still here")
        port = stack.envoy.listen_port
        pid = listener_pid(port)
        assert pid is not None
        assert answers(stack.http_url, MODEL, timeout=30)
        with stopped_thread(pid, "wrk:worker_0") as worker:
            stopped = time.monotonic()
            # Each worker accepts on a socket of its own: the stuck one's connections get no
            # answer, the other's do; the admin answers as ever, so probes see nothing.
            replies = _healthz_on_new_connections(port, 16)
            assert set(replies) == {b"", b"HTTP/1.1 200 OK"}, replies
            admin = f"http://127.0.0.1:{stack.envoy.admin_port}/ready"
            assert httpx.get(admin, timeout=2).status_code == 200
            aborted = None
            while listener_pid(port) in (None, pid) or not answers(stack.http_url, MODEL):
                supervisor.tick()
                if aborted is None and worker.reaped():  # Envoy died (and we reaped it)
                    aborted = time.monotonic() - stopped
                assert time.monotonic() - stopped < BACK_WITHIN, (
                    f"not back within {BACK_WITHIN:.0f} s; {reports}\n{tail_logs(logs)}"
                )
                time.sleep(0.1)
        log = (logs / "envoy.log").read_text()
    assert aborted is not None
    # Aborted by the guard dog: after the kill timeout, with SIGABRT, naming the thread.
    assert KILL_TIMEOUT <= aborted < KILL_TIMEOUT + KILL_JITTER + 5, aborted
    assert f"Watchdog AbortAction terminating thread with tid {worker.tid}." in log
    assert reports[0] == f"saxgw: envoy (pid {pid}) exited with status -6; restarting it in 0.5 s"
    assert reports[1].startswith("saxgw: restarted envoy (pid ")
    assert not [line for line in reports if "is hung" in line], reports


pytestmark = pytest.mark.timeout(180)
