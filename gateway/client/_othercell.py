"""Whether the admin at a cell's address is the admin of another cell.

location.proto may name an address that the admin of another cell took over: two stacks of
two cells on one SAX_ROOT, each on the default admin port; a pod IP reused. That admin
answers as an admin does, for its own cell: a request naming a model of this one is
INVALID_ARGUMENT `must be within SAX cell "/sax/other"` (upstream's; the embedded cell says
`Sax cell '/sax/other'`), a listing lists its own models, and WatchLoc (which neither checks
the cell of) is NOT_FOUND. Taken at its word, a gateway listed another cell's models as this
one's, refused a publish as the caller's error, and called published models not published.
`CellAdmin` treats such an admin as one that is not there: UNAVAILABLE, and the address is
read again.
"""

from __future__ import annotations

import grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway import naming
from gateway.common.errors import InvalidArgumentError, UnavailableError, code_from_text

# Admin methods whose NOT_FOUND an admin of another cell may give too: neither Sax's admin nor
# the embedded one checks the cell of a WatchLoc; an admin may not check a WaitForReady's
# either (the embedded one does). Such a NOT_FOUND is checked with `in_answer_to_list`.
UNCHECKED = frozenset({"WatchLoc", "WaitForReady"})


def unavailable(other: str, cell: naming.CellId) -> UnavailableError:
    """What a call learns of an admin of cell ``other`` at ``cell``'s address."""
    return UnavailableError(f"it is the admin of cell {other}, not of {cell}")


def unchecked(method: str) -> UnavailableError:
    """What a call learns of a NOT_FOUND to ``method`` whose admin did not answer the List
    that would say which cell it serves (it went away, or the connection was dropped)."""
    return UnavailableError(
        f"it answered {method} NOT_FOUND, then not the List that says which cell it serves"
    )


def in_error(details: str | None, cell: naming.CellId) -> str | None:
    """The other cell an admin's refusal (``details``) says it serves, or None."""
    other = naming.cell_of_refusal(details or "")
    return None if other == cell.id else other


def in_listing(reply: object, cell: naming.CellId) -> str | None:
    """The other cell a List ``reply`` says its admin serves, or None: that of a model it
    names, unless it names one of ``cell`` too. Upstream's admin serves what its state.proto
    holds, another cell's model as well (a state copied from that cell): beside this cell's
    own, such a model says nothing of the admin, and a listing leaves it out (`of_cell`)."""
    if not isinstance(reply, admin_pb2.ListResponse):
        return None
    others = []
    for published in reply.published_models:
        try:
            listed = naming.parse_model_id(published.model.model_id).cell
        except InvalidArgumentError:
            continue  # not for this check to judge
        if listed == cell:
            return None
        others.append(listed.id)
    return others[0] if others else None


def of_cell(reply: admin_pb2.ListResponse, cell: naming.CellId) -> list[admin_pb2.PublishedModel]:
    """The models of ``cell`` that a List ``reply`` of its admin names, each once: of a model
    named twice (a state that holds it twice), the last, which upstream's admin serves."""
    prefix = f"{cell.id}/"
    kept = {
        m.model.model_id: m for m in reply.published_models if m.model.model_id.startswith(prefix)
    }
    return list(kept.values())


async def in_answer_to_list(
    stub: admin_pb2_grpc.AdminAsyncStub, model_id: str, cell: naming.CellId, timeout: float
) -> tuple[bool, str | None]:
    """Asks the admin to List ``model_id`` (of ``cell``), which every Sax admin checks the
    cell of: whether it answered at all, and the other cell it serves, if it does."""
    try:
        await stub.List(admin_pb2.ListRequest(model_id=model_id), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        # An admin ends its messages with the code's name; grpc's own failures do not.
        if code_from_text(exc.details() or "") is None:
            return False, None
        return True, in_error(exc.details(), cell)
    return True, None
