"""Keeps a `ProcessGroup` running: a child that exits is started again, with backoff, and one
that hangs is killed first.

One gateway (or Envoy, or the cell) dying must not take the stack down with it: `saxgw up`
calls `Supervisor.tick` twice a second, which logs each exit and restarts the child after a
delay that doubles while it keeps dying (0.5 s, 1 s, 2 s ... 30 s) and resets once it has run
for a minute (`RestartSettings`, a part of `StackSettings`, set by the config file's
``supervisor:`` section). A child that runs but does not answer its health probes
(gateway/launch/watchdog.py) is killed with SIGKILL, which a stopped or wedged process cannot
ignore as it may SIGTERM, and is then restarted as any child that exited. One that closed its
port (a gateway sent SIGTERM drains) gets the group's stop grace to exit first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.launch.probes import Probe
from gateway.launch.processes import ProcessGroup
from gateway.launch.watchdog import Watchdog
from gateway.restartconfig import RestartSettings

__all__ = ["RestartSettings", "Supervisor"]

log = logging.getLogger(__name__)


@dataclass
class _State:
    delay: float
    started: float = 0.0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Restarts exited children of ``group`` and kills those of ``probes`` that hang;
    ``report`` receives one line per event. `close` stops the probes.

    The children ``group`` holds when the supervisor is made are taken as ready (`Stack`
    waits until each answers): they have no start grace, so a hang that comes before the
    first probe is not mistaken for a slow start."""

    def __init__(
        self,
        group: ProcessGroup,
        settings: RestartSettings | None = None,
        report: Callable[[str], None] = log.warning,
        probes: Mapping[str, Probe] | None = None,
    ) -> None:
        self.group = group
        self.settings = settings or RestartSettings()
        self._report = report
        self._watchdog = Watchdog(probes or {}, self.settings, stop_grace=group.grace)
        now = time.monotonic()
        self._states = {name: self._state(now) for name, _ in group.children}
        for name, proc in group.children:
            self._watchdog.watch(name, proc, now, ready=True)

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
                if hung := self._watchdog.check(name, proc, now):
                    self._report(
                        f"saxgw: {name} (pid {proc.pid}) is hung: {hung}; killing it with SIGKILL"
                    )
                    proc.kill()  # its exit is noticed and restarted as any other
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
                try:
                    new = self.group.restart(name)
                except OSError as exc:
                    # Its log cannot be opened, the fork fails (no memory, too many
                    # processes), the venv was rebuilt under it: raised, it ended `saxgw up`
                    # and every other child with it. Tried again later, as an exit is.
                    state.restart_at = now + state.delay
                    self._report(
                        f"saxgw: could not restart {name}: {exc}; "
                        f"trying again in {state.delay:.1f} s"
                    )
                    state.delay = min(state.delay * 2, self.settings.max_delay)
                    continue
                state.restart_at, state.started = None, now
                state.restarts += 1
                self._report(f"saxgw: restarted {name} (pid {new.pid})")

    def close(self) -> None:
        """Stops the watchdog's probes (a probe under way ends by its own timeout)."""
        self._watchdog.close()
