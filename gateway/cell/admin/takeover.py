"""Whether another admin server of the cell is alive, before this one takes the cell over.

Two admins of one cell would each save their own view of it into one state.proto, each
overwriting the other's acknowledged changes; upstream's open-source platform does not stop
that either (its leader lock is per process). A new admin asks the one that location.proto
names: one that answers sax.Admin is alive, and the new one refuses to start. One that refuses
connections, hangs, is not an admin (it lacks sax.Admin, or asks for credentials, which no
Sax admin does), or is the admin of another cell (its port reused) is gone::

    await refuse_if_alive(files, cell="/sax/test", mine="127.0.0.1:10000")
"""

from __future__ import annotations

import grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.cell._errors import CellStartError
from gateway.cell._files import CellFiles, parse_location
from gateway.common.errors import asks_for_credentials
from gateway.common.names import cell_of_refusal

_PROBE_NAME = "takeover-probe"
#: Seconds the live admin has to answer: it answers List at once; a hung one is as good as gone.
PROBE_TIMEOUT_S = 1.0
# Answers that say nothing serves sax.Admin there (any other answer comes from an admin).
_GONE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
    }
)


async def refuse_if_alive(files: CellFiles, *, cell: str, mine: str) -> None:
    """Raises CellStartError if location.proto names another address where an admin answers."""
    other = parse_location(await files.read_location_bytes())
    if other is None or other == mine or not await admin_answers(other, cell):
        return
    raise CellStartError(
        f"another admin server of {cell} answers at {other} (its location.proto names it): "
        "two admins of one cell overwrite each other's saved state; stop it first"
    )


async def admin_answers(address: str, cell: str) -> bool:
    """Whether an admin server of ``cell`` answers at ``address`` within `PROBE_TIMEOUT_S`."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        # A model of this cell, which an admin of another cell (its port or IP reused)
        # refuses naming its own: that is no admin of this cell either.
        probe = admin_pb2.ListRequest(model_id=f"{cell}/{_PROBE_NAME}")
        try:
            await admin_pb2_grpc.AdminStub(channel).List(probe, timeout=PROBE_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _GONE or asks_for_credentials(exc.code(), exc.details() or ""):
                return False
            serves = cell_of_refusal(exc.details() or "")
            if serves is not None and serves != cell:
                return False
    return True
