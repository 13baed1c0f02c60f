"""Keeps a `ProcessGroup` running: a child that exits is started again, with backoff.

One gateway (or Envoy, or the cell) dying must not take the stack down with it: `saxgw up`
calls `Supervisor.tick` twice a second, which logs each exit and restarts the child after a
delay that doubles while it keeps dying (0.5 s, 1 s, 2 s ... 30 s) and resets once it has run
for a minute (`RestartSettings`, a part of `StackSettings`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.launch.processes import ProcessGroup

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RestartSettings:
    """How the supervisor paces the restarts of a child that keeps dying (seconds)."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    """The delay doubles with each exit up to this."""
    stable_after: float = 60.0
    """A child that ran this long before exiting starts again from ``first_delay``."""


@dataclass
class _State:
    delay: float
    started: float = 0.0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Restarts exited children of ``group``; ``report`` receives one line per event."""

    def __init__(
        self,
        group: ProcessGroup,
        settings: RestartSettings | None = None,
        report: Callable[[str], None] = log.warning,
    ) -> None:
        self.group = group
        self.settings = settings or RestartSettings()
        self._report = report
        now = time.monotonic()
        self._states = {name: self._state(now) for name, _ in group.children}

    def _state(self, now: float) -> _State:
        return _State(delay=self.settings.first_delay, started=now)

    def restarts(self, name: str) -> int:
        """How many times ``name`` was restarted."""
        return self._states[name].restarts if name in self._states else 0

    def tick(self) -> None:
        """Notices exits and performs the restarts that are due; never blocks."""
        now = time.monotonic()
        for name, proc in list(self.group.children):
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = self._state(now)
            if proc.poll() is None:
                continue
            if state.restart_at is None:
                if now - state.started >= self.settings.stable_after:
                    state.delay = self.settings.first_delay
                state.restart_at = now + state.delay
                self._report(
                    f"saxgw: {name} (pid {proc.pid}) exited with status {proc.returncode}; "
                    f"restarting it in {state.delay:.1f} s"
                )
                state.delay = min(state.delay * 2, self.settings.max_delay)
            elif now >= state.restart_at:
                new = self.group.restart(name)
                state.restart_at, state.started = None, now
                state.restarts += 1
                self._report(f"saxgw: restarted {name} (pid {new.pid})")
