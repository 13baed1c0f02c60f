"""gateway.common.deadline: one absolute deadline per call, on one clock."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import gateway
from gateway.client import CallOptions
from gateway.common.deadline import Deadline, now
from gateway.common.errors import DeadlineExceededError


def test_after_none_is_no_deadline() -> None:
    deadline = Deadline.after(None)
    assert deadline.at == math.inf
    assert deadline.remaining() is None
    assert deadline.timeout("x") is None
    assert deadline.allows(1e9)


def test_remaining_counts_down_from_a_fixed_point() -> None:
    deadline = Deadline(now() + 100)
    first = deadline.remaining()
    assert first is not None and 0 < first <= 100
    second = deadline.timeout("x")
    assert second is not None and second <= first


def test_timeout_raises_once_passed_naming_the_call() -> None:
    with pytest.raises(DeadlineExceededError, match="admin List exceeded its deadline"):
        Deadline(now() - 1).timeout("admin List")
    assert not Deadline(now() + 0.5).allows(1.0)


def test_earliest_picks_the_sooner() -> None:
    soon, late = Deadline(now() + 1), Deadline(now() + 50)
    assert soon.earliest(late) is soon
    assert late.earliest(soon) is soon
    assert late.earliest(None) is late


def test_retries_may_end_before_the_call() -> None:
    deadline = Deadline.after(600, retry_for=1)
    assert deadline.allows(0.5) and not deadline.allows(2)
    remaining = deadline.timeout("x")
    assert remaining is not None and remaining > 590  # the call itself still has its time
    # The sooner of two keeps the sooner end of retries of either.
    soon = Deadline(now() + 5)
    combined = soon.earliest(deadline)
    assert (combined.at, combined.retry_by) == (soon.at, deadline.retry_by)
    assert deadline.earliest(soon) == combined
    assert Deadline(now() + 0.5, retry_by=now() + 9).earliest(deadline).retry_by < now() + 1


def _waits(make: Callable[[], Deadline], seconds: float) -> bool:
    """Whether the wait that ``make()``'s deadline allows at once is what is left of
    ``seconds`` after the clock reads around the two calls (bad: the call's 600 s). A loaded
    host may pause between them for any time: a bound of 1 s below, as here before, could
    fail on a pause, where this cannot."""
    before = now()
    waited = make().wait_timeout("x")
    took = now() - before
    return waited is not None and seconds - took - 1e-3 <= waited <= seconds


def test_a_wait_for_a_replica_ends_with_the_retries() -> None:
    assert _waits(lambda: Deadline.after(600, retry_for=2), 2)
    assert _waits(lambda: Deadline.after(None, retry_for=2), 2)
    assert Deadline.after(None).wait_timeout("x") is None
    assert _waits(lambda: Deadline.after(5), 5)
    # Retries over: no time to wait (the wait reports its own timeout); the call's deadline
    # passed: the deadline's error, as `timeout` raises it.
    late = Deadline(now() + 600, now() - 1).wait_timeout("x")
    assert late is not None and late < 0
    with pytest.raises(DeadlineExceededError, match="call to m exceeded its deadline"):
        Deadline(now() - 1, now() + 5).wait_timeout("call to m")


def test_call_options_deadline_is_the_sooner_of_deadline_and_timeout() -> None:
    soon = Deadline(now() + 1)
    assert CallOptions(deadline=soon, timeout=50).call_deadline() is soon
    assert CallOptions(deadline=soon).call_deadline() is soon
    assert CallOptions().call_deadline().at == math.inf
    by_timeout = CallOptions(deadline=Deadline(now() + 50), timeout=1).call_deadline()
    assert by_timeout.at < now() + 2


def test_one_clock_everywhere() -> None:
    # Deadlines are compared on time.monotonic only: no event-loop clock anywhere.
    other_clock = re.compile(r"loop\.time\(\)|\.time\(\) *[+-]|timeout_at\(")
    root = Path(gateway.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if other_clock.search(line)
    ]
    assert found == []
