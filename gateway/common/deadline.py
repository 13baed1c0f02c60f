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
    """An absolute point on ``now()``'s clock; ``math.inf`` when the call has none."""

    at: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None: no deadline)."""
        return cls(math.inf if seconds is None else now() + seconds)

    def earliest(self, other: Deadline | None) -> Deadline:
        """The sooner of two deadlines."""
        return self if other is None or self.at <= other.at else other

    def remaining(self) -> float | None:
        """Seconds left (negative once passed), or None without a deadline."""
        return None if self.at == math.inf else self.at - now()

    def timeout(self, what: str) -> float | None:
        """Seconds left for the next RPC; ``DeadlineExceededError`` naming ``what`` if none are."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceededError(f"{what} exceeded its deadline")
        return remaining

    def allows(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds still leaves time before the deadline."""
        return now() + delay < self.at
