"""Client.watch_addresses across a table the client forgot (after its own publish, update or
unpublish): the new table's first answer is sent, whatever its version, and only once; and a
watch that ends NOT_FOUND sends the empty set first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace

import pytest

from gateway.client import _client
from gateway.client._locations import AddressTable
from gateway.common.errors import NotFoundError, UnavailableError

MODEL = "/sax/test/lm"


class _Router:
    """Hands out the tables it holds, one after the other, as the client's router does when
    a table is forgotten and the next call opens a new one."""

    def __init__(self, *tables: AddressTable) -> None:
        self._tables = list(tables)

    def table(self, model_id: str) -> AddressTable:
        assert model_id == MODEL
        return self._tables.pop(0) if len(self._tables) > 1 else self._tables[0]


async def _watching(first: set[str]) -> tuple[AddressTable, AsyncGenerator[list[str]]]:
    """A watch whose table answered ``first`` (and sent it), and the table the client opens
    once that one is forgotten."""
    old = AddressTable(MODEL, num_conn=2, seed=0)
    new = AddressTable(MODEL, num_conn=2, seed=0)
    client = SimpleNamespace(_router=_Router(old, new))
    watch = _client.Client._watch_addresses(client, MODEL)  # type: ignore[arg-type]
    old.set_addresses(first)
    assert await asyncio.wait_for(anext(watch), 5) == sorted(first)
    # Forgotten, as Router.forget leaves a table: stale for every call, which asks anew.
    old.set_error(UnavailableError(f"{MODEL} changed"), asked_at=float("-inf"))
    return new, watch


async def test_a_forgotten_table_is_followed_by_the_new_one() -> None:
    # The new table's first answer had version 1, as the old table's had: it was taken for
    # one already sent, and a watcher (`saxgw watch`) waited for ever for the second replica.
    new, watch = await _watching({"a:1"})
    new.set_addresses({"a:1", "b:2"})  # the admin had both when the new table first asked
    assert await asyncio.wait_for(anext(watch), 5) == ["a:1", "b:2"]
    new.set_unreachable(UnavailableError("the admin is away"))  # a change, not of addresses
    new.set_addresses({"b:2"})
    assert await asyncio.wait_for(anext(watch), 5) == ["b:2"]  # no repeat of a:1, b:2 first
    await watch.aclose()


async def test_the_same_set_from_a_new_table_is_not_sent_again() -> None:
    new, watch = await _watching({"a:1"})
    new.set_addresses({"a:1"})
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.1)
    assert not pending.done()
    new.set_addresses({"a:1", "c:3"})
    assert await asyncio.wait_for(pending, 5) == ["a:1", "c:3"]
    await watch.aclose()


async def test_the_empty_set_comes_before_not_found_however_late_the_consumer() -> None:
    # The admin's empty set (the model unpublished) and its NOT_FOUND (the next poll) both
    # reached the table while the consumer was still busy with the last set: the watch
    # raised NOT_FOUND first and the empty set was never sent (`saxgw watch` printed no
    # "- ADDRESS" lines).
    table = AddressTable(MODEL, num_conn=2, seed=0)
    client = SimpleNamespace(_router=_Router(table))
    watch = _client.Client._watch_addresses(client, MODEL)  # type: ignore[arg-type]
    table.set_addresses({"a:1", "b:2"})
    assert await asyncio.wait_for(anext(watch), 5) == ["a:1", "b:2"]
    table.set_addresses(set())
    table.set_error(NotFoundError(f"model {MODEL} is not published"), asked_at=0.0)
    assert await asyncio.wait_for(anext(watch), 5) == []
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(anext(watch), 5)


async def test_a_new_table_answered_not_found_still_sends_the_empty_set() -> None:
    # The client's own unpublish forgot the table; the new one's first answer is NOT_FOUND.
    new, watch = await _watching({"a:1"})
    new.set_error(NotFoundError(f"model {MODEL} is not published"), asked_at=0.0)
    assert await asyncio.wait_for(anext(watch), 5) == []
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(anext(watch), 5)


pytestmark = pytest.mark.asyncio
