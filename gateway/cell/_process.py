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


async def wait_for_signal(*, or_stdin_eof: bool = False) -> None:
    """Returns on the first SIGINT or SIGTERM, or, if asked, when stdin closes.

    A launcher gives its children a pipe as stdin: should the launcher die without stopping
    them (kill -9, a crashed test run), the pipe closes and they exit instead of lingering.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    watcher = asyncio.create_task(_stdin_closed(stopped)) if or_stdin_eof else None
    try:
        await stopped.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if watcher is not None:
            watcher.cancel()


async def _stdin_closed(stopped: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()
    stopped.set()


def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run with a quiet exit on Ctrl-C."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
