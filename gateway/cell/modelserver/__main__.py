"""Runs a Sax model server (CPU stand-in models) as its own process.

python -m gateway.cell.modelserver --sax-root /tmp/root --port 10001 [--cell /sax/test] ...
"""

from __future__ import annotations

import argparse

from gateway.cell import _process
from gateway.cell._args import add_cell_arguments, configure_logging, settings_from_args
from gateway.cell.modelserver.loaded import Cancellation
from gateway.cell.modelserver.server import ModelServer
from gateway.cell.settings import CellSettings


def _cancelled(event: Cancellation) -> None:
    _process.emit(
        f"cancelled model={event.model_key} tokens_sent={event.tokens_sent} at={event.at:.6f}"
    )


async def _serve(settings: CellSettings, *, port: int, exit_on_stdin_eof: bool) -> None:
    server = ModelServer(
        settings,
        port=port,
        on_joined=lambda admin: _process.emit(f"joined {admin}"),
        on_cancelled=_cancelled,
    )
    await server.start()
    _process.emit(f"listening {server.address}")
    try:
        await _process.wait_for_signal(or_stdin_eof=exit_on_stdin_eof)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.cell.modelserver", description=__doc__)
    add_cell_arguments(parser, sax_root_required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, name="modelserver")
    settings = settings_from_args(args, sax_root=args.sax_root)
    _process.run(_serve(settings, port=args.port, exit_on_stdin_eof=args.exit_on_stdin_eof))


if __name__ == "__main__":
    main()
