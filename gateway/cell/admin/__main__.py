"""Runs a Sax admin server as its own process.

python -m gateway.cell.admin --sax-root /tmp/root --port 10000 [--cell /sax/test] ...
"""

from __future__ import annotations

import dataclasses

from gateway.cell import _process
from gateway.cell.admin.server import AdminServer
from gateway.cell.settings import DEFAULT_ADMIN_PORT, CellSettings


def _server(settings: CellSettings, port: int) -> AdminServer:
    return AdminServer(dataclasses.replace(settings, admin_port=port))


def main(argv: list[str] | None = None) -> None:
    _process.serve_main(
        argv, "gateway.cell.admin", __doc__, default_port=DEFAULT_ADMIN_PORT, server=_server
    )


if __name__ == "__main__":
    main()
