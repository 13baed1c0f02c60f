"""Finds children that run but no longer answer: stopped (SIGSTOP), or an event loop blocked.

Such a child never exits, so the supervisor's restart on exit never comes, and every call
through it stalls until its deadline. The watchdog asks each child, through the health
endpoint it already serves, whether it answers, and names one whose probes failed
``probe_failures`` times in a row; the supervisor kills it.

A child that answered and then refuses connections has closed its port: it is stopping (a
gateway sent SIGTERM drains its calls for its grace period, then exits). Its refusals count
only once it has been stopping for ``stop_grace`` (what the stack's own stop gives it before
SIGKILL), so that its streams end as at any stop, and it is restarted once it exits.

    dog = Watchdog({"gateway-0": grpc_health_probe("127.0.0.1:50051")}, RestartSettings(), 15)
    why = dog.check("gateway-0", proc, time.monotonic())   # None, or why it is hung

Probes run on a thread per child, one at a time, so `check` never waits for an answer.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.launch.probes import Probe, Refused
from gateway.restartconfig import RestartSettings

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    """One child process (by pid) under watch."""

    pid: int
    started: float
    answered: bool
    """Since it started; until then, failures within the start grace do not count."""
    failures: int = 0
    """Failed probes in a row."""
    last_failure: str = ""
    killed: bool = False
    closed: float | None = None
    """When its probes were first refused after it had answered (its port closed), if they
    still are."""


def _ask(probe: Probe, timeout: float) -> str | None:
    try:
        return probe(timeout)
    except Exception:  # a probe's own bug is no sign of a hung child
        log.exception("a health probe failed")
        return None


class Watchdog:
    """Probes each child named in ``probes`` every ``probe_interval`` s (0: never), each on a
    thread of its own: a probe starts as soon as the last one failed, not at the next tick.
    A child that closed its port has ``stop_grace`` seconds to exit before its probes count."""

    def __init__(
        self, probes: Mapping[str, Probe], settings: RestartSettings, stop_grace: float = 0.0
    ) -> None:
        self._probes = dict(probes) if settings.probe_interval > 0 else {}
        self._settings = settings
        self._stop_grace = stop_grace
        self._lock = threading.Lock()  # the probing threads write the watches, `check` reads
        self._watches: dict[str, _Watch] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = threading.Event()

    def watch(self, name: str, proc: subprocess.Popen[bytes], now: float, *, ready: bool) -> None:
        """Watches ``proc`` as ``name`` from now on; ``ready``: it has answered already (the
        stack waited for it), so it has no start grace."""
        probe = self._probes.get(name)
        if probe is None:
            return
        with self._lock:
            self._watches[name] = _Watch(pid=proc.pid, started=now, answered=ready)
        if name not in self._threads:
            thread = threading.Thread(
                target=self._run, args=(name, probe), name=f"probe-{name}", daemon=True
            )
            self._threads[name] = thread
            thread.start()

    def check(self, name: str, proc: subprocess.Popen[bytes], now: float) -> str | None:
        """Called for a running child at every tick, without waiting for anything; returns
        why the child is hung once its probes have failed ``probe_failures`` times in a row
        (then nothing more for that process)."""
        if name not in self._probes:
            return None
        with self._lock:
            watch = self._watches.get(name)
            if watch is not None and watch.pid == proc.pid:
                if watch.killed or watch.failures < self._settings.probe_failures:
                    return None
                watch.killed = True
                return (
                    f"{watch.failures} health probes in a row failed (the last: "
                    f"{watch.last_failure})"
                )
        self.watch(name, proc, now, ready=False)  # a new process: its start begins now
        return None

    def _run(self, name: str, probe: Probe) -> None:
        settings = self._settings
        while not self._closed.is_set():
            started = time.monotonic()
            with self._lock:
                watch = self._watches[name]
                judged = watch.killed or watch.failures >= settings.probe_failures
            if not judged:  # a process found hung is not asked again
                failure = _ask(probe, settings.probe_timeout)
                with self._lock:
                    if self._watches[name] is watch:  # not restarted meanwhile
                        self._count(watch, failure, time.monotonic())
            self._closed.wait(max(0.0, settings.probe_interval - (time.monotonic() - started)))

    def _count(self, watch: _Watch, failure: str | None, now: float) -> None:
        if failure is None:
            watch.answered, watch.failures, watch.closed = True, 0, None
            return
        if watch.answered and isinstance(failure, Refused):
            # Before it first answered, a refusal is a start (``start_grace``), not a stop.
            watch.closed = now if watch.closed is None else watch.closed
            if now - watch.closed < self._stop_grace:
                return
            failure = f"{failure}; its port closed {now - watch.closed:.0f} s ago"
        else:
            watch.closed = None
        if watch.answered or now - watch.started >= self._settings.start_grace:
            watch.failures += 1
            watch.last_failure = failure

    def close(self) -> None:
        """Stops probing; a probe under way ends by its own timeout (the threads are daemons:
        they never hold up the exit)."""
        self._closed.set()
