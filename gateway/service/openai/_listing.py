"""Every cell's published models, for ``/v1/models``: one cell that does not answer (its
admin gone or hung, a stale location.proto) neither hides nor holds up the others.

A cell whose admin cannot answer is left out. Its admin is given the whole unreachable
window (``--admin-unreachable-after``) once; until it answers again, later listings give it
`DOWN_WAIT_S`, time enough for an admin that is back: waiting the whole window at each
listing held every ``/v1/models`` 5 to 10 s for as long as the outage lasted (the OpenAI SDKs
and frameworks call it as they start).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.client import Client, ModelDetail, SaxError
from gateway.common.deadline import Deadline
from gateway.common.failurelog import FailureLog

log = logging.getLogger(__name__)
# One line when a cell is first left out, then once a minute, and when it is listed again:
# it was a WARNING at every listing.
_LEFT_OUT = FailureLog(log)
_LISTING = "listing the models of"
#: Seconds a listing of several cells waits for a cell that could not answer the last one.
DOWN_WAIT_S = 1.0


class CellListings:
    """Lists the models of every cell under SAX_ROOT, remembering the cells that did not
    answer the last time."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._down: set[str] = set()

    async def models(self, deadline: Deadline) -> list[ModelDetail]:
        """Every cell's models, by cell; with several cells, one that fails is left out
        (logged); a single cell's failure is the caller's error."""
        cells = sorted(await self._client.list_cells())
        several = len(cells) > 1
        self._down &= set(cells)  # a cell removed from SAX_ROOT is no longer remembered
        moment = deadline.earliest(Deadline.after(DOWN_WAIT_S))
        listed = await asyncio.gather(
            *(
                self._client.list_all(c, deadline=moment if c in self._down else deadline)
                for c in cells
            ),
            return_exceptions=True,
        )
        models: list[ModelDetail] = []
        for cell, result in zip(cells, listed, strict=True):
            if isinstance(result, SaxError) and several:
                self._down.add(cell)
                _LEFT_OUT.failed((_LISTING, cell), f"/v1/models: cell {cell} left out: {result}")
                continue
            if isinstance(result, BaseException):
                raise result
            if cell in self._down:
                self._down.discard(cell)
                _LEFT_OUT.succeeded((_LISTING, cell), f"/v1/models: {_LISTING} {cell}")
            models += result
        return models
