"""Runs one server (admin or model server) as its own OS process until SIGINT/SIGTERM.

Such a process reports to whoever started it through lines on stdout, one event each:

    listening <address>
    joined <admin address>                                     (model servers)
    cancelled model=<key> tokens_sent=<n> at=<unix time>       (model servers)

Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gateway.cell._args import add_cell_arguments, configure_logging, settings_from_args
from gateway.cell._errors import CellStartError
from gateway.cell.settings import CellSettings
from gateway.common import flags, logs
from gateway.common.storage import StorageError


class Server(Protocol):
    """What ``serve_main`` runs: an admin server or a model server."""

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def serve_main(
    argv: list[str] | None,
    package: str,
    description: str | None,
    *,
    default_port: int,
    server: Callable[[CellSettings, int], Server],
) -> None:
    """The whole ``main`` of a one-server process, ``python -m <package>``: flags, logging
    (named after the package's last part), serve until a signal. ``server(settings, port)``
    builds the server (inside the event loop)."""
    name = package.rsplit(".", 1)[-1]
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=description)
    add_cell_arguments(parser, sax_root_required=True)
    parser.add_argument(
        "--port", type=flags.optional_port, default=default_port, help="0 picks a free port"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level, name=name, fmt=args.log_format)
    settings = settings_from_args(args, sax_root=args.sax_root)
    try:
        run(_serve(lambda: server(settings, args.port), exit_on_stdin_eof=args.exit_on_stdin_eof))
    except CellStartError as exc:  # the operator's to fix: one line, not a traceback
        print(f"python -m {package}: {exc}", file=sys.stderr)
        sys.exit(1)
    except StorageError as exc:  # logged where it happened; the exit says why, in one line
        print(f"python -m {package}: could not start: {exc}", file=sys.stderr)
        sys.exit(1)


async def _serve(make: Callable[[], Server], *, exit_on_stdin_eof: bool) -> None:
    server = make()
    await server.start()
    emit(f"listening {server.address}")
    # An admin server ends by itself too, once another admin took its cell over.
    superseded: asyncio.Event | None = getattr(server, "superseded", None)
    waits: list[asyncio.Future[object]] = [
        asyncio.ensure_future(wait_for_signal(or_stdin_eof=exit_on_stdin_eof))
    ]
    reread: asyncio.Event | None = getattr(server, "reread", None)
    for event in (superseded, reread):
        if event is not None:
            waits.append(asyncio.ensure_future(event.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        await server.stop()
    if superseded is not None and superseded.is_set():
        raise CellStartError("another admin server took the cell over; stopped")
    if reread is not None and reread.is_set():
        raise CellStartError("state.proto holds models this admin did not read; stopped to read it")


def emit(line: str) -> None:
    """Reports an event to whoever started this process, if it still reads them. One that
    died (killed while we started) closed the pipe: the BrokenPipeError was a traceback, and
    the server, never stopped, another at exit. It exits at stdin's end (--exit-on-stdin-eof),
    as it would have had it died a moment later."""
    logs.print_line(line)


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
