"""Envoy's access log as a stack writes it (`envoy.log` in its log directory)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.launch.stack import Stack

Line = dict[str, object]


def _log(stack: Stack) -> Path:
    return Path(stack.settings.log_dir or "") / "envoy.log"


def access_log_size(stack: Stack) -> int:
    """Where the log ends now: `access_log_line_after` reads only what comes after it."""
    return _log(stack).stat().st_size


def access_log_line_after(
    stack: Stack, offset: int, match: Callable[[Line], bool], timeout: float = 20.0
) -> Line:
    """The first access log line past ``offset`` (bytes) that ``match`` accepts: for a request
    Envoy refused before it read a request ID. Envoy flushes its log every second, so this
    waits for it."""
    log = _log(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as text:
            text.seek(offset)
            for raw in text.read().decode().splitlines():
                if raw.startswith("{"):
                    line: Line = json.loads(raw)
                    if "status" in line and match(line):
                        return line
        time.sleep(0.2)
    pytest.fail(f"no matching access log line in {log} past byte {offset}")


def access_log_lines_after(
    stack: Stack, offset: int, match: Callable[[Line], bool], count: int, timeout: float = 20.0
) -> list[Line]:
    """The access log lines past ``offset`` (bytes) that ``match`` accepts, once there are
    ``count`` of them (Envoy flushes its log every second)."""
    log = _log(stack)
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as text:
            text.seek(offset)
            lines = [json.loads(raw) for raw in text.read().decode().splitlines() if raw[:1] == "{"]
        found = [line for line in lines if "status" in line and match(line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def access_log_line(stack: Stack, marker: str, timeout: float = 20.0) -> Line:
    """The access log line that contains ``marker`` (a request or trace ID); Envoy flushes its
    log every second, so this waits for it."""
    log = _log(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in log.read_text().splitlines():
            if text.startswith("{") and marker in text:
                line: Line = json.loads(text)
                return line
        time.sleep(0.2)
    pytest.fail(f"no access log line with {marker} in {log}")


def access_log_lines(stack: Stack, marker: str, count: int) -> list[Line]:
    """Every access log line that contains ``marker`` (the attempts of one call, retried by
    its client), once there are ``count`` of them or 20 s have passed: Envoy flushes its log
    every second, so a call's attempts may come in two flushes."""
    return access_log_lines_after(stack, 0, lambda line: marker in json.dumps(line), count)
