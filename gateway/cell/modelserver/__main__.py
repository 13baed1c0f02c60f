"""Runs a Sax model server (CPU stand-in models) as its own process.

python -m gateway.cell.modelserver --sax-root /tmp/root --port 10001 [--cell /sax/test] ...
"""

from __future__ import annotations

from gateway.cell import _process
from gateway.cell.modelserver.loaded import Cancellation
from gateway.cell.modelserver.server import ModelServer
from gateway.cell.settings import CellSettings


def _cancelled(event: Cancellation) -> None:
    _process.emit(
        f"cancelled model={event.model_key} tokens_sent={event.tokens_sent} at={event.at:.6f}"
    )


def _server(settings: CellSettings, port: int) -> ModelServer:
    return ModelServer(
        settings,
        port=port,
        on_joined=lambda admin: _process.emit(f"joined {admin}"),
        on_cancelled=_cancelled,
    )


def main(argv: list[str] | None = None) -> None:
    _process.serve_main(argv, "gateway.cell.modelserver", __doc__, default_port=0, server=_server)


if __name__ == "__main__":
    main()
