"""Runs one server (admin or model server) as its own OS process until SIGINT/SIGTERM.

Such a process reports to whoever started it through lines on stdout, one event each:

    listening <address>
    joined <admin address>                                     (model servers)
    cancelled model=<key> tokens_sent=<n> at=<unix time>       (model servers)

Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any


def emit(line: str) -> None:
    print(line, flush=True)


async def wait_for_signal() -> None:
    """Returns on the first SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run with a quiet exit on Ctrl-C."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
