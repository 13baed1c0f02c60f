"""Runs a whole embedded Sax cell: an admin server plus N CPU model servers.

    python -m gateway.cell [--sax-root DIR] [--admin-port 10000] [--model-servers 1]
                           [--model-server-ports 10001,10002] [--cell /sax/test] ...

Prints one line per listening address on stdout (a JSON record with JSON logs), logs to
stderr, and stops everything on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile

from gateway.cell import _process
from gateway.cell._args import add_cell_arguments, configure_logging, settings_from_args
from gateway.cell._errors import CellStartError
from gateway.cell._launcher import EmbeddedCell
from gateway.cell._supervise import supervise
from gateway.cell.settings import DEFAULT_ADMIN_PORT, CellSettings
from gateway.common import flags, logs
from gateway.common.logs import LogFormat

_log = logging.getLogger("gateway.cell")


def _ports(text: str) -> tuple[int, ...]:
    """Comma-separated ports; 0 picks a free one."""
    return tuple(flags.optional_port(part) for part in text.split(",") if part.strip())


def _announce(line: str, log_format: LogFormat) -> None:
    """Prints an address line on stdout: as it is for text logs, and as a JSON record for
    JSON logs, which `saxgw up --log-dir` writes to the same file (cell.log)."""
    if logs.resolved(log_format) == "json":
        logs.print_record(_log, line)
    else:
        logs.print_line(line)


async def _run(settings: CellSettings, log_level: str, log_format: LogFormat) -> None:
    # Heard from the start: a signal while the servers started killed this process at once
    # (status -15), and each server it had started met the closed pipe with a traceback.
    signalled = asyncio.ensure_future(_process.wait_for_signal())
    try:
        cell = EmbeddedCell(settings, log_level=log_level, log_format=log_format)
        starting = asyncio.ensure_future(cell.__aenter__())  # stops what it started if cancelled
        await asyncio.wait({signalled, starting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            _log.info("stopped while starting")
            return
        await starting  # a start that failed raises here, having stopped what it started
        try:
            lines = [f"SAX_ROOT={cell.sax_root}", f"admin {cell.cell} {cell.admin_address}"]
            lines += [f"model-server {server.address}" for server in cell.model_servers]
            for line in lines:
                _announce(line, log_format)
            supervisor = asyncio.create_task(supervise(cell), name="supervise")
            try:
                await signalled
            finally:
                supervisor.cancel()
                await asyncio.gather(supervisor, return_exceptions=True)
            _log.info("stopping the cell")
        finally:
            await cell.close()
    finally:
        signalled.cancel()
        await asyncio.gather(signalled, return_exceptions=True)


def parse(argv: list[str] | None = None) -> tuple[CellSettings, str, LogFormat]:
    """The settings, log level and log format the flags describe (``cell_argv`` builds such
    flags)."""
    parser = argparse.ArgumentParser(prog="python -m gateway.cell", description=__doc__)
    add_cell_arguments(parser, sax_root_required=False)
    parser.add_argument(
        "--admin-port",
        type=flags.optional_port,
        default=DEFAULT_ADMIN_PORT,
        help="0 picks a free port",
    )
    parser.add_argument("--model-servers", type=int, default=1, help="how many model servers")
    parser.add_argument(
        "--model-server-ports",
        type=_ports,
        default=(),
        help="comma-separated ports of the model servers (default: free ports)",
    )
    args = parser.parse_args(argv)
    sax_root = args.sax_root or tempfile.mkdtemp(prefix="sax-root-")
    settings = dataclasses.replace(
        settings_from_args(args, sax_root=sax_root),
        admin_port=args.admin_port,
        num_model_servers=args.model_servers,
        model_server_ports=args.model_server_ports,
    )
    if len(settings.model_server_ports) > settings.num_model_servers:
        parser.error("more --model-server-ports than --model-servers")
    return settings, args.log_level, args.log_format


def main(argv: list[str] | None = None) -> None:
    settings, log_level, log_format = parse(argv)
    configure_logging(log_level, name="cell", fmt=log_format)
    try:
        _process.run(_run(settings, log_level, log_format))
    except CellStartError as exc:  # the failing server logged why: one line, not a traceback
        print(f"python -m gateway.cell: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
