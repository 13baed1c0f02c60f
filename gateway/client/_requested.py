"""Whether a model without replicas has any requested. With ``ClientSettings.fail_unrequested``
(a gateway's), a call to a model published with 0 replicas (or updated to 0) fails at once
with FAILED_PRECONDITION, since none will serve it until someone asks for replicas; it waited
for its whole deadline and ended 504 (60 s by default, three minutes with the OpenAI SDKs' two
retries). Without it, as upstream's clients, such a call waits, for an update of its replicas.

Sax's WatchLoc names a model's serving addresses only: the same empty set for a model whose
replicas are loading, or that no server can take yet (calls wait for those, as upstream's
client does), and for one that has none requested. The admin's List tells them apart. A call
that finds no replica starts a List of its model (at most one a second per model, the rest
use its answer for a second), in a task of its own; when the answer is "none requested" the
calls waiting on the table are woken and fail. An admin that does not answer leaves them
waiting as before: the address watch reports an outage itself.

One of a stack's several gateway processes (`saxgw up|serve --workers N`) hears of a model
that another one published, updated or unpublished, on their shared table's change board
(`board`), before that one replies: an answer read before the change refuses no call after
it. Replicas requested elsewhere (saxutil at the admin) are seen within ``ANSWER_HOLDS_S``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from gateway import naming
from gateway.client._admin import CellAdmin
from gateway.client._changes import list_one
from gateway.client._hung import Board
from gateway.client._locations import AddressTable
from gateway.common.deadline import Deadline, now
from gateway.common.errors import FailedPreconditionError, SaxError

#: How long an answer of the admin holds: a model updated to have replicas (by another client,
#: which this one hears nothing of until a replica serves) is waited for again within it.
ANSWER_HOLDS_S = 1.0
# A List of one model is answered from the admin's memory at once.
_READ_S = 5.0
_BOARD_KEY = "replicas:"  # a model's key on the board: a count of the changes made to it


class RequestedReplicas:
    """Reads, for models that have no replica, whether they have any requested."""

    def __init__(self, admin_for: Callable[[naming.CellId], CellAdmin]) -> None:
        self._admin_for = admin_for
        self._reads: set[asyncio.Task[None]] = set()
        self.board: Board | None = None
        """The stack's board, if this process is one of several (`Client.share_findings`)."""

    def changed(self, model_id: str) -> None:
        """This process changed the model (or may have): the stack's others ask anew."""
        if self.board is not None:
            self.board.note_change(_BOARD_KEY + model_id)

    def _mark(self, model_id: str) -> int:
        return 0 if self.board is None else self.board.changes(_BOARD_KEY + model_id)

    def refusal(self, table: AddressTable) -> SaxError | None:
        """FAILED_PRECONDITION if the admin said within ``ANSWER_HOLDS_S`` that the model
        has no replica requested, and no process of the stack has changed it since; else
        None, and a read of the model is started unless one was within that time and after
        the last change (it wakes the table's waiters when it finds none requested)."""
        at = now()
        if table.requested_mark != self._mark(table.model_id):  # changed by another process
            table.none_requested, table.requested_read_at = "", float("-inf")
        if table.none_requested and at - table.none_requested_at < ANSWER_HOLDS_S:
            return FailedPreconditionError(table.none_requested)
        if at - table.requested_read_at >= ANSWER_HOLDS_S:
            table.requested_mark = self._mark(table.model_id)
            table.requested_read_at = at
            task = asyncio.get_running_loop().create_task(
                self._read(table),
                name=f"replicas of {table.model_id}",
                context=contextvars.Context(),  # part of no call
            )
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
        return None

    def next_read_in(self, table: AddressTable) -> float:
        """Seconds until `refusal` may read the model again: a call waiting for a replica asks
        again then. Nothing else wakes it when the model drops to 0 replicas elsewhere (another
        stack, saxutil) while its address set is empty: the addresses do not change, and the
        call waited out its whole deadline (504) for an answer read a moment before."""
        return max(0.0, table.requested_read_at + ANSWER_HOLDS_S - now())

    async def _read(self, table: AddressTable) -> None:
        model = naming.parse_model_id(table.model_id)
        try:
            found = await list_one(self._admin_for(model.cell), model, Deadline.after(_READ_S))
        except SaxError:
            return  # gone or unreachable: the address watch says so to the waiting calls
        if found.model.requested_num_replicas == 0 and not table.addresses:
            table.set_none_requested(
                f"{model} has no replica to serve it: it is published with 0 replicas (an "
                "update of its replicas makes it serve)"
            )

    async def close(self) -> None:
        reads = list(self._reads)
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
