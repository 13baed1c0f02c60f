"""Keeps an embedded cell's servers running: a server that exits is started again.

`python -m gateway.cell` runs this next to its cell, so a crashed (or `kill -9`ed) admin or
model server comes back on its old port, after a backoff that grows while it keeps dying.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from gateway.cell._errors import CellStartError
from gateway.cell._launcher import EmbeddedCell

_log = logging.getLogger("gateway.cell")

#: First wait before a restart; doubles while the server keeps dying, up to the cell's
#: ``max_restart_backoff`` (30 s by default).
BACKOFF_S = 0.5
#: A server that ran this long before dying starts over at the first backoff.
STABLE_AFTER_S = 60.0
_CHECK_EVERY_S = 0.2


class _Backoff:
    def __init__(self, longest: float) -> None:
        self.delay = min(BACKOFF_S, longest)
        self.longest = longest
        self.started = time.monotonic()

    def next_delay(self) -> float:
        if time.monotonic() - self.started >= STABLE_AFTER_S:
            self.delay = min(BACKOFF_S, self.longest)
        delay, self.delay = self.delay, min(self.delay * 2, self.longest)
        return delay


async def supervise(cell: EmbeddedCell) -> None:
    """Restarts the admin and model servers of ``cell`` when they exit, until cancelled."""
    longest = cell.settings.max_restart_backoff
    admin = _Backoff(longest)
    servers = [_Backoff(longest) for _ in cell.model_servers]
    while True:
        await asyncio.sleep(_CHECK_EVERY_S)
        if not cell.admin_running:
            delay = admin.next_delay()
            ended = await cell.admin_exit_note()
            _log.warning("the admin server %s; restarting it in %.1f s", ended, delay)
            await asyncio.sleep(delay)
            await _attempt("the admin server", cell.restart_admin(kill=True, wait_for_joins=False))
            admin.started = time.monotonic()
        for handle, backoff in zip(cell.model_servers, servers, strict=True):
            if handle.running:
                continue
            delay = backoff.next_delay()
            ended = await handle.exit_note()
            _log.warning(
                "model server %s %s; restarting it in %.1f s", handle.address, ended, delay
            )
            await asyncio.sleep(delay)
            await _attempt(f"model server {handle.address}", cell.restart_model_server(handle))
            backoff.started = time.monotonic()


async def _attempt(what: str, restart: Awaitable[None]) -> None:
    try:
        await restart
    # CellStartError: the server exited before it listened (its storage refused it, a corrupt
    # state.proto): the operator may mend that, so try again. Uncaught, it ended this task,
    # and with it every later restart of the admin and the model servers, with no word.
    except (CellStartError, RuntimeError, TimeoutError, OSError) as exc:
        _log.error("restarting %s failed: %s; will try again", what, exc)
    else:
        _log.info("restarted %s", what)
