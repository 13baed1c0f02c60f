"""Envoy's access log as a stack writes it (`envoy.log` in its log directory)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.launch.stack import Stack


def access_log_line(stack: Stack, marker: str, timeout: float = 20.0) -> dict[str, object]:
    """The access log line that contains ``marker`` (a request or trace ID); Envoy flushes its
    log every second, so this waits for it."""
    log = Path(stack.settings.log_dir or "") / "envoy.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in log.read_text().splitlines():
            if text.startswith("{") and marker in text:
                line: dict[str, object] = json.loads(text)
                return line
        time.sleep(0.2)
    pytest.fail(f"no access log line with {marker} in {log}")
