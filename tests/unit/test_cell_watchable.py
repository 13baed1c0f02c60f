"""WatchableSet: Sax's WatchLoc sequence-number protocol, without sockets."""

from __future__ import annotations

import asyncio

from gateway.cell.admin.watchable import Mutation, WatchableSet


def _replay(start: set[str] | None, changelog: list[Mutation]) -> set[str]:
    values = set(start or ())
    for mutation in changelog:
        (values.add if mutation.added else values.discard)(mutation.value)
    return values


async def test_changelog_from_seqno() -> None:
    watched = WatchableSet()
    watched.add("a:1")
    watched.add("b:2")
    result = await watched.watch(0)
    # Like upstream, the log is kept within twice the set's size, so 0 may get the full set.
    assert _replay(set(result.values or ()), result.changelog) == {"a:1", "b:2"}
    assert result.next_seqno == 2
    watched.discard("a:1")
    result = await watched.watch(2)
    assert result.changelog == [Mutation(added=False, value="a:1")]


async def test_full_set_once_the_log_is_folded() -> None:
    watched = WatchableSet()
    for i in range(20):
        watched.add(f"s:{i}")
        watched.discard(f"s:{i}")
    watched.add("kept:1")
    result = await watched.watch(0)
    assert result.values is not None  # the log no longer reaches back to 0
    assert _replay(set(result.values), result.changelog) == {"kept:1"}
    assert result.next_seqno == 41


async def test_up_to_date_watch_waits_for_the_next_change() -> None:
    watched = WatchableSet()
    waiting = asyncio.ensure_future(watched.watch(0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    watched.add("a:1")
    result = await asyncio.wait_for(waiting, 1)
    assert result.changelog == [Mutation(added=True, value="a:1")]


async def test_ahead_close_and_sync_to() -> None:
    watched = WatchableSet()
    watched.sync_to({"a:1", "b:2"})
    watched.sync_to({"b:2", "c:3"})
    assert watched.current() == {"b:2", "c:3"}
    assert (await watched.watch(99)).next_seqno == 4
    waiting = asyncio.ensure_future(watched.watch(4))
    await asyncio.sleep(0.01)
    watched.close()
    released = await asyncio.wait_for(waiting, 1)
    assert released.values == [] and released.next_seqno == 0
    proto = watched.full().to_proto()
    assert proto.has_fullset and list(proto.values) == ["b:2", "c:3"]
