"""An embedded, Sax-compatible cell: an admin server and CPU model servers speaking Sax's gRPC
protocol, so the whole stack runs on a laptop and in CI.

    async with EmbeddedCell(CellSettings(sax_root="/tmp/root", num_model_servers=2)) as cell:
        print(cell.admin_address, [server.address for server in cell.model_servers])

`python -m gateway.cell` does the same from a shell; `AdminServer` and `ModelServer` run one
server in the current event loop.

Role: a separate program that only speaks Sax's protocol. May import ``gateway.common``
only; never the client, the service, the launchers or the CLI.
"""

from __future__ import annotations

from gateway.cell._args import cell_argv
from gateway.cell._launcher import EmbeddedCell, ModelServerHandle
from gateway.cell.admin.server import AdminServer
from gateway.cell.models import MODEL_PATHS
from gateway.cell.modelserver.loaded import Cancellation
from gateway.cell.modelserver.server import ModelServer
from gateway.cell.settings import CellSettings

__all__ = [
    "MODEL_PATHS",
    "AdminServer",
    "Cancellation",
    "CellSettings",
    "EmbeddedCell",
    "ModelServer",
    "ModelServerHandle",
    "cell_argv",
]
