"""A cell told to stop (SIGTERM) cancels its supervisor, which may be waiting for a server
it restarts: the cancellation must end that wait even when the server's news arrives in the
same turn of the event loop. Python 3.11's `asyncio.wait_for` returned the news instead and
dropped the cancellation: the supervisor went on restarting servers every 0.2 s, and the cell
never stopped. Seen once in a full run (tests/faults/test_cell_supervisor.py, an admin taken
over from): its SIGTERM handler gone, its supervisor still running, no "stopping the cell"."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cell._launcher import _ServerProcess


async def test_a_wait_for_a_server_cancelled_as_its_news_arrives_is_cancelled() -> None:
    server = _ServerProcess(module="gateway.cell.admin", argv=[], name="admin#2")
    waiting = asyncio.ensure_future(
        server.wait_until(lambda: bool(server.address), timeout=30, what="to listen")
    )
    await asyncio.sleep(0)  # it waits for news
    server.address = "127.0.0.1:1"
    server._notify()  # "listening ..." read
    waiting.cancel()  # SIGTERM, in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiting
