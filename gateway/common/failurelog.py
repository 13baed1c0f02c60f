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


@dataclass
class _Ongoing:
    message: str
    logged_at: float
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

    def failed(self, key: tuple[str, str], message: str) -> None:
        """A WARNING (or the log's ``level``) for a new failure, for one whose message
        changed, or once ``REPEAT_S`` has passed since the last; else a DEBUG line."""
        now = self._clock()
        with self._lock:
            ongoing = self._ongoing.get(key)
            if ongoing is not None and ongoing.message == message:
                ongoing.total += 1
                if now - ongoing.logged_at < REPEAT_S:
                    ongoing.since_logged += 1
                    self._log.debug("%s (again)", message)
                    return
                repeats, ongoing.logged_at, ongoing.since_logged = ongoing.since_logged, now, 0
                self._log.log(
                    self._level,
                    "%s (%d more times in the last %.0f s)",
                    message,
                    repeats,
                    REPEAT_S,
                )
                return
            total = ongoing.total + 1 if ongoing is not None else 1
            self._ongoing[key] = _Ongoing(message, now, 0, total)
        self._log.log(self._level, "%s", message)

    def succeeded(self, key: tuple[str, str], what: str) -> None:
        """An INFO line if ``key`` was failing: ``what`` works again."""
        if not self._ongoing:  # the usual case: nothing to look up, no lock to take
            return
        with self._lock:
            ongoing = self._ongoing.pop(key, None)
        if ongoing is not None:
            self._log.info("%s works again, after %d failures", what, ongoing.total)
