"""Keeps a `ProcessGroup` running: a child that exits is started again, with backoff.

One gateway (or Envoy, or the cell) dying must not take the stack down with it: `saxgw up`
calls `Supervisor.tick` twice a second, which logs each exit and restarts the child after a
delay that doubles while it keeps dying (0.5 s, 1 s, 2 s ... 30 s) and resets once it has run
for a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.launch.processes import ProcessGroup

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass
class _State:
    delay: float = FIRST_DELAY_S
    started: float = 0.0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Restarts exited children of ``group``; ``report`` receives one line per event."""

    def __init__(self, group: ProcessGroup, report: Callable[[str], None] = log.warning) -> None:
        self.group = group
        self._report = report
        now = time.monotonic()
        self._states = {name: _State(started=now) for name, _ in group.children}

    def restarts(self, name: str) -> int:
        """How many times ``name`` was restarted."""
        return self._states[name].restarts if name in self._states else 0

    def tick(self) -> None:
        """Notices exits and performs the restarts that are due; never blocks."""
        now = time.monotonic()
        for name, proc in list(self.group.children):
            state = self._states.setdefault(name, _State(started=now))
            if proc.poll() is None:
                continue
            if state.restart_at is None:
                if now - state.started >= STABLE_AFTER_S:
                    state.delay = FIRST_DELAY_S
                state.restart_at = now + state.delay
                self._report(
                    f"saxgw: {name} (pid {proc.pid}) exited with status {proc.returncode}; "
                    f"restarting it in {state.delay:.1f} s"
                )
                state.delay = min(state.delay * 2, MAX_DELAY_S)
            elif now >= state.restart_at:
                new = self.group.restart(name)
                state.restart_at, state.started = None, now
                state.restarts += 1
                self._report(f"saxgw: restarted {name} (pid {new.pid})")
