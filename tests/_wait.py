"""Waiting for a condition in a test: a guard against a hang, not a speed check."""

from __future__ import annotations

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
