"""Logging a failure that repeats: once when it starts, then at most once a minute while it
lasts (with how often it happened meanwhile), and once when it ends.

A storage outage fails every read of every caller and every health probe (each gateway lists
SAX_ROOT every 5 s): one WARNING per failure is a line every few seconds per process for as
long as the outage lasts, which buries whatever else the log says. An operator needs to know
when it started, that it goes on, and when it ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds between two WARNINGs of one failure that goes on.
REPEAT_S = 60.0


# Causes (messages) of one failure remembered at once: a cause may name an address or a
# model, and the oldest goes past this many.
_MAX_CAUSES = 16
# Failures (keys) remembered at once. Some keys name what comes and goes, and some never
# succeed by name: a replica's own failures are keyed by its address, and a cell whose model
# servers restart on new ports leaves one entry per address for the life of the gateway. Past
# this many, the failure remembered longest is forgotten (its next failure is a new one, at
# once; its "works again" line is not written).
_MAX_KEYS = 1024


@dataclass
class _Ongoing:
    logged: dict[str, float]  # each cause logged, and when
    since_logged: int  # failures since the last WARNING
    total: int


class FailureLog:
    """Failures of operations named by a key (``("reading", path)``). Thread-safe: storage
    operations run in worker threads."""

    def __init__(
        self,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        *,
        level: int = logging.WARNING,
    ) -> None:
        """``level``: of the lines that say a failure started or goes on."""
        self._log = log
        self._clock = clock
        self._level = level
        self._ongoing: dict[tuple[str, str], _Ongoing] = {}
        self._lock = threading.Lock()

    def failed(
        self,
        key: tuple[str, str],
        message: str,
        *,
        exc_info: bool = False,
        cause: str | None = None,
    ) -> None:
        """A WARNING (or the log's ``level``) for a new failure, for a cause (``cause``, by
        default ``message``) it has not had yet, or for one ``REPEAT_S`` after that cause's
        last; else a DEBUG line. A cause logged lately is not logged again when another came
        between: two that took turns (an unreachable admin's "failed to connect" and
        "unreachable") were a WARNING each time, hundreds a minute. ``exc_info``: the
        exception being handled goes with the lines at the log's level."""
        cause = message if cause is None else cause
        now = self._clock()
        with self._lock:
            ongoing = self._ongoing.get(key)
            if ongoing is None:
                if len(self._ongoing) >= _MAX_KEYS:
                    del self._ongoing[next(iter(self._ongoing))]
                self._ongoing[key] = _Ongoing({cause: now}, 0, 1)
            else:
                ongoing.total += 1
                logged_at = ongoing.logged.pop(cause, None)
                if logged_at is not None and now - logged_at < REPEAT_S:
                    ongoing.logged[cause] = logged_at
                    ongoing.since_logged += 1
                    self._log.debug("%s (again)", message)
                    return
                if len(ongoing.logged) >= _MAX_CAUSES:
                    del ongoing.logged[next(iter(ongoing.logged))]
                ongoing.logged[cause] = now
                if logged_at is not None:
                    repeats, ongoing.since_logged = ongoing.since_logged, 0
                    self._log.log(
                        self._level,
                        "%s (%d more times in the last %.0f s)",
                        message,
                        repeats,
                        REPEAT_S,
                        exc_info=exc_info,
                    )
                    return
        self._log.log(self._level, "%s", message, exc_info=exc_info)

    def failing(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` failed and has not succeeded since."""
        with self._lock:
            return key in self._ongoing

    def succeeded(self, key: tuple[str, str], what: str) -> None:
        """An INFO line if ``key`` was failing: ``what`` works again."""
        if not self._ongoing:  # the usual case: nothing to look up, no lock to take
            return
        with self._lock:
            ongoing = self._ongoing.pop(key, None)
        if ongoing is not None:
            self._log.info("%s works again, after %d failures", what, ongoing.total)
