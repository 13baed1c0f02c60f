"""Waiting for a condition in a test: a guard against a hang, not a speed check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest


def wait_until(what: str, done: Callable[[], bool], within: float = 30.0) -> None:
    """Waits for ``done()``, failing the test with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g} s: {what}")
        time.sleep(0.05)


async def until(what: str, done: Callable[[], bool], within: float = 30.0) -> None:
    """On an event loop: waits for ``done()``, the state the test's next step needs (a task
    queued, a beat sent, a record logged), failing the test with ``what`` after ``within``
    seconds. Where a test slept a fixed time instead, a loaded host (CI: 6 test processes on
    2 cores) woke it before that state was reached. Looks every millisecond: the test acts
    on the state before the loop's next timer of its own (a later beat, a poll) can change it."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.001)
