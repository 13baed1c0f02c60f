"""One deadline per call: an absolute time on one clock, fixed where the call enters (the
gateway's servicer, the client's public API) and passed down to every RPC the call makes::

    deadline = Deadline.after(10.0)                 # once, at the edge
    await stub.List(request, timeout=deadline.timeout("admin List"))   # what is left, each RPC

The clock is ``time.monotonic`` everywhere (``now``); nothing compares times from another clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from gateway.common.errors import DeadlineExceededError

now = time.monotonic
"""The one clock of deadlines."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on ``now()``'s clock; ``math.inf`` when the call has none.

    ``retry_by`` may end retries sooner than the call: a long generation may decode until
    ``at``, yet an overloaded model should be reported (a 429 clients back off on) when a
    short call would report it, not after waiting out the whole generation's time."""

    at: float
    retry_by: float = math.inf
    """After this point (or ``at``, if sooner) `allows` refuses every wait before a retry."""

    @classmethod
    def after(cls, seconds: float | None, retry_for: float | None = None) -> Deadline:
        """The deadline ``seconds`` from now (None: no deadline), whose retries stop
        ``retry_for`` seconds from now (None: at the deadline)."""
        start = now()
        return cls(
            math.inf if seconds is None else start + seconds,
            math.inf if retry_for is None else start + retry_for,
        )

    def earliest(self, other: Deadline | None) -> Deadline:
        """The sooner of two deadlines (with the sooner end of retries of the two)."""
        if other is None:
            return self
        first, second = (self, other) if self.at <= other.at else (other, self)
        if first.retry_by <= second.retry_by:
            return first
        return Deadline(first.at, second.retry_by)

    def remaining(self) -> float | None:
        """Seconds left (negative once passed), or None without a deadline."""
        return None if self.at == math.inf else self.at - now()

    def timeout(self, what: str) -> float | None:
        """Seconds left for the next RPC; ``DeadlineExceededError`` naming ``what`` if none are."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceededError(f"{what} exceeded its deadline")
        return remaining

    def wait_timeout(self, what: str) -> float | None:
        """Seconds a wait before a try (for a replica to serve) may last: until retries end, or
        the deadline if sooner; ``DeadlineExceededError`` naming ``what`` once the deadline has
        passed. A stream's retries end where a unary call's would, and so does its wait."""
        remaining = self.timeout(what)
        if self.retry_by == math.inf:
            return remaining
        return self.retry_by - now() if remaining is None else min(remaining, self.retry_by - now())

    def allows(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds (before a retry) still leaves time before the
        deadline, and ends before retries do."""
        return now() + delay < min(self.at, self.retry_by)
