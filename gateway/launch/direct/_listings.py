"""Each cell's models as its admin last listed them, listed concurrently: a cell's listing is
a task of its own, and a listing round waits only for the cells that answered last time.

Listed one after another, a hung admin (stopped: its List is dropped after the client's
``admin_unreachable_after``, 5 s) or a refused one held every other cell's changes back for as
long, each round: a model published in a healthy cell went direct 5 s later, one given an ACL
went on going direct, unchecked, as long. Now such a cell's listing goes on in the background,
its models stay as last listed, and the other cells are listed and written meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gateway.client import Client, SaxError
from gateway.common.failurelog import FailureLog
from gateway.launch.direct._resources import ACL_METHOD, Model

log = logging.getLogger("gateway.launch.direct._plane")  # one log of the plane's lines
#: A failed listing is logged when it starts, then once a minute while it lasts, and once when
#: it ends: an admin down was a WARNING each listing, one every 2.5 s for as long as it lasted.
_LISTING = "listing"
#: Listings in flight at once: a SAX_ROOT of many cells is listed a few at a time, and cells
#: whose admins hang hold no more than this many of the client's connections busy.
MAX_LISTINGS = 8
#: Seconds a round waits for the cells that answered last time: an admin lists in
#: milliseconds; one slower than this is counted with its last models until it answers.
WAIT_S = 1.0


class CellListings:
    """The models of the cells ``client`` lists, one listing task per cell at a time."""

    def __init__(self, client: Client, *, wait: float = WAIT_S) -> None:
        self._client, self._wait = client, wait
        self._bound = asyncio.Semaphore(MAX_LISTINGS)
        self._running: dict[str, asyncio.Task[list[Model]]] = {}
        self._by_cell: dict[str, list[Model]] = {}  # each cell's models, as last listed
        self._lagging: set[str] = set()  # cells whose last listing failed or outlasted a wait
        self._failures = FailureLog(log)

    async def models(self, cells: Sequence[str]) -> list[Model]:
        """The models of ``cells``: listed now where the admin answers within the round,
        else as last listed (none for a cell never listed)."""
        for cell in [c for c in self._running if c not in cells]:
            self._running.pop(cell).cancel()  # a cell gone from SAX_ROOT
        self._by_cell = {c: m for c, m in self._by_cell.items() if c in cells}
        self._lagging &= set(cells)
        for cell in cells:
            if cell not in self._running:
                self._running[cell] = asyncio.create_task(self._list(cell))
        awaited = [t for c, t in self._running.items() if c not in self._lagging]
        if awaited:
            await asyncio.wait(awaited, timeout=self._wait)
        for cell, task in list(self._running.items()):
            if task.done():
                del self._running[cell]
                self._take(cell, task)
            else:
                self._lagging.add(cell)
        return [m for cell in cells for m in self._by_cell.get(cell, [])]

    def close(self) -> None:
        """Cancels the listings in flight."""
        for task in self._running.values():
            task.cancel()
        self._running.clear()

    async def _list(self, cell: str) -> list[Model]:
        async with self._bound:
            listed = await self._client.list_all(cell)
        return [Model(d.model_id, tuple(d.addresses), d.acls.get(ACL_METHOD, "")) for d in listed]

    def _take(self, cell: str, task: asyncio.Task[list[Model]]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, SaxError):
            self._lagging.add(cell)
            message = f"direct mode: listing {cell}'s models failed, its routes kept: {exc}"
            self._failures.failed((_LISTING, cell), message)
            return
        self._by_cell[cell] = task.result()  # raises what is not a SaxError: a bug
        self._lagging.discard(cell)
        self._failures.succeeded((_LISTING, cell), f"direct mode: listing {cell}'s models")
