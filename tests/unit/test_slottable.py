"""The table in which a stack's gateway processes count per-client calls and streams together:
exact across workers, crash-safe, bounded. Each `SlotTable` here is a worker of its own (its
own file descriptions, so its locks exclude the others' as another process's would);
tests/e2e/security/test_shared_concurrency.py runs real processes."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.common import slottable
from gateway.common.slottable import UNSHARED, AtLimit, SlotTable, TableError
from gateway.service._counts import SharedCounts


@pytest.fixture
def path(tmp_path: Path) -> str:
    table = str(tmp_path / "slots")
    slottable.create(table, workers=3)
    return table


@pytest.fixture
def workers(path: str) -> Iterator[list[SlotTable]]:
    tables = [SlotTable(path, worker) for worker in range(3)]
    yield tables
    for table in tables:
        table.close()


def test_a_limit_holds_across_workers(workers: list[SlotTable]) -> None:
    first, second, third = workers
    rows = [first.take("team-a", 3), second.take("team-a", 3), third.take("team-a", 3)]
    for table in workers:
        with pytest.raises(AtLimit) as refused:
            table.take("team-a", 3)
        assert refused.value.held == 3
    assert first.take("team-b", 3) != UNSHARED  # another key has a count of its own
    second.give(rows[1])
    assert third.held("team-a") == 2
    assert third.take("team-a", 3) == rows[2]  # the freed slot, taken by another worker
    assert first.held("team-a") == 3


def test_a_change_noted_by_one_worker_is_seen_by_the_others(workers: list[SlotTable]) -> None:
    first, second, _ = workers
    before = second.changes("acl:/sax/test/lm")
    first.note_change("acl:/sax/test/lm")
    assert second.changes("acl:/sax/test/lm") == before + 1
    assert first.changes("acl:/sax/test/lm") == before + 1
    first.take("team-a", 3)  # the board and the counts do not overlap
    assert (first.held("team-a"), second.changes("acl:/sax/test/lm")) == (1, before + 1)


def test_a_new_worker_zeroes_what_its_killed_predecessor_held(path: str) -> None:
    survivor, dying = SlotTable(path, 0), SlotTable(path, 1)
    try:
        for _ in range(2):
            dying.take("team-a", 4)
        dying.close()  # as SIGKILL leaves it: the counts stay, its lock goes
        assert survivor.held("team-a") == 2
        restarted = SlotTable(path, 1)
        assert survivor.held("team-a") == 0
        restarted.close()
    finally:
        survivor.close()


def test_a_dead_workers_slots_are_freed_before_it_restarts(path: str) -> None:
    survivor, dying = SlotTable(path, 0), SlotTable(path, 1)
    try:
        survivor.take("team-a", 2)
        dying.take("team-a", 2)
        with pytest.raises(AtLimit):
            survivor.take("team-a", 2)  # both alive: the limit holds
        dying.close()
        survivor.take("team-a", 2)  # about to refuse, it found worker 1 gone
        assert survivor.held("team-a") == 2
    finally:
        survivor.close()


def test_two_processes_cannot_be_one_worker(
    path: str, monkeypatch: pytest.MonkeyPatch, workers: list[SlotTable]
) -> None:
    monkeypatch.setattr(slottable, "WORKER_WAIT_S", 0.1)
    with pytest.raises(TableError, match=r"worker 1 of .*slots is held by another process"):
        SlotTable(path, 1)
    assert workers[1].take("team-a", 1) != UNSHARED  # and the first is untouched


def test_rows_of_keys_without_calls_are_taken_again(tmp_path: Path) -> None:
    path = str(tmp_path / "small")
    slottable.create(path, workers=1, rows=slottable.WINDOW)  # one window: every row
    table = SlotTable(path, 0)
    try:
        held = [table.take(f"10.0.0.{n}", 1) for n in range(slottable.WINDOW)]
        assert sorted(held) == list(range(slottable.WINDOW))
        # Full: a new key is not counted here (its process counts it alone)...
        assert table.take("10.0.1.1", 1) == UNSHARED
        # ...until some key's calls end; its row then serves another key.
        table.give(held[3])
        assert table.take("10.0.1.1", 1) == held[3]
        with pytest.raises(AtLimit):
            table.take("10.0.1.1", 1)
        assert table.held("10.0.0.3") == 0
    finally:
        table.close()


def test_a_full_table_counts_in_the_process(tmp_path: Path) -> None:
    path = str(tmp_path / "small")
    slottable.create(path, workers=1, rows=slottable.WINDOW)
    table = SlotTable(path, 0)
    try:
        for n in range(slottable.WINDOW):
            table.take(f"calls:10.0.0.{n}", 1)
        counts = SharedCounts(table, "calls")
        ticket = counts.take("10.0.1.1", 1)
        assert ticket == UNSHARED
        with pytest.raises(AtLimit):  # the limit still holds, in this process
            counts.take("10.0.1.1", 1)
        counts.give("10.0.1.1", ticket)
        assert counts.held("10.0.1.1") == 0
    finally:
        table.close()


def test_a_lock_held_by_a_stopped_process_is_waited_for_briefly(
    path: str, workers: list[SlotTable], monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = os.open(path, os.O_RDWR)  # another process's hold, never let go
    fcntl.flock(stopped, fcntl.LOCK_EX)
    tries: list[int] = []
    flock = fcntl.flock

    def counted(fd: int, operation: int) -> None:
        tries.append(operation)
        flock(fd, operation)

    try:
        monkeypatch.setattr(fcntl, "flock", counted)  # the module the table calls, too
        started = time.monotonic()
        assert workers[0].take("team-a", 1) == UNSHARED
        waited = time.monotonic() - started
        # LOCK_WAIT_S (0.2 s); the bad is a wait for the holder, for ever. 1 s over it, not
        # 0.5 s: a loaded host's pauses.
        assert slottable.LOCK_WAIT_S <= waited < slottable.LOCK_WAIT_S + 1.0
        assert len(tries) > 1  # tried again and again meanwhile
        tries.clear()
        assert workers[0].take("team-a", 1) == UNSHARED  # at once, while it stays stuck
        # One try, no wait: what `< LOCK_WAIT_S` (0.2 s, against microseconds) timed before.
        assert tries == [fcntl.LOCK_EX | fcntl.LOCK_NB]
    finally:
        os.close(stopped)
    assert workers[1].take("team-a", 1) != UNSHARED  # the other workers were never stuck


def test_files_that_are_no_table_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="cannot open the slot table"):
        SlotTable(str(tmp_path / "missing"), 0)
    other = tmp_path / "other"
    other.write_bytes(b"x" * 10_000)
    with pytest.raises(TableError, match="is not a slot table"):
        SlotTable(str(other), 0)
    slottable.create(str(other), workers=2)
    with pytest.raises(TableError, match="worker 2 is not one of the 2"):
        SlotTable(str(other), 2)


def test_workers_handed_the_file_share_it_once_its_name_is_removed(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `saxgw up` hands its gateways the table: open, its name possibly gone (a /tmp
    # cleaner). Workers that opened the name again counted in a new table each.
    monkeypatch.setattr(slottable, "WORKER_WAIT_S", 0.1)
    held = os.open(path, os.O_RDWR)  # the stack's, for as long as it runs
    try:
        first = SlotTable(path, 0, inherited=os.dup(held))
        os.unlink(path)
        slottable.create(path, workers=3)  # a new file of that name is no one's table
        second = SlotTable(path, 1, inherited=os.dup(held))
        try:
            first.take("team-a", 2)
            second.take("team-a", 2)
            with pytest.raises(AtLimit):
                first.take("team-a", 2)
            # Its workers' locks are the file's too: one index is still one process.
            with pytest.raises(TableError, match=r"worker 0 of .* is held by another process"):
                SlotTable(path, 0, inherited=os.dup(held))
            second.close()  # as SIGKILL leaves it: its lock goes, so does its slot
            assert first.take("team-a", 2) != UNSHARED
        finally:
            first.close()
    finally:
        os.close(held)
