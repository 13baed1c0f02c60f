"""Runs a Sax admin server as its own process.

python -m gateway.cell.admin --sax-root /tmp/root --port 10000 [--cell /sax/test] ...
"""

from __future__ import annotations

import argparse
import dataclasses

from gateway.cell import _process
from gateway.cell._args import add_cell_arguments, configure_logging, settings_from_args
from gateway.cell.admin.server import AdminServer
from gateway.cell.settings import CellSettings


async def _serve(settings: CellSettings, *, exit_on_stdin_eof: bool) -> None:
    server = AdminServer(settings)
    await server.start()
    _process.emit(f"listening {server.address}")
    try:
        await _process.wait_for_signal(or_stdin_eof=exit_on_stdin_eof)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.cell.admin", description=__doc__)
    add_cell_arguments(parser, sax_root_required=True)
    parser.add_argument("--port", type=int, default=10000, help="0 picks a free port")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, name="admin")
    settings = settings_from_args(args, sax_root=args.sax_root)
    _process.run(
        _serve(
            dataclasses.replace(settings, admin_port=args.port),
            exit_on_stdin_eof=args.exit_on_stdin_eof,
        )
    )


if __name__ == "__main__":
    main()
