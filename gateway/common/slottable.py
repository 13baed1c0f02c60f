"""Counts that the gateway processes of one stack share, so that a per-client limit
(calls in flight, open streams) or a model's (calls in flight, queued) holds for the stack,
as Envoy's rate limits do, and not once per process (counted in each, ``max_concurrent: 4``
allowed 16 under `saxgw up --workers 4`).

One file, mapped into every process (`mmap`): a header, a column of row keys (a 64-bit hash
of the counted key), and one column of counts per worker, each on pages of its own. A worker
only ever writes its own column of counts; a call is admitted by adding up its key's row
across the columns under a lock on the whole file (`fcntl.flock`), so the limit is exact
across processes:

    create("/run/saxgw/slots", workers=2)       # by the stack, before its gateways start
    table = SlotTable("/run/saxgw/slots", worker=0)   # or inherited=N, a descriptor of it
    row = table.take("calls:team-a", limit=4)   # AtLimit(held) when the row adds up to 4
    table.give(row)                             # when the call ends

Crashes: the kernel drops a dead process's locks. A worker holds a lock of its own on one
byte of the file (an open file description lock on byte ``worker``: it excludes the other
workers, not the table's lock) for its whole life; at start it zeroes its column (what its
killed predecessor held), and a process about to refuse a call first zeroes the column of any
worker whose lock is free (dead, not yet restarted), so its slots come back at once. A lock
on the file held by a process stopped mid-way (SIGSTOP) is waited for only briefly: the call
is then counted in its own process alone (`UNSHARED`), as when the key's rows are all taken.

Removal: everything a worker shares is the file's, not its name's, so a stack hands its
gateways the file itself (an open descriptor, ``inherited``: `SlotTable` opens the file again from
it), and the stack's table stays one when its name is removed (a /tmp cleaner) and gateways
start again: the name was opened anew, and a gateway started after a removal counted in a new
file while the others counted in the removed one (each its own limit: 14 streams let in, 7 by
each of two gateways, where 8 were allowed).

Rows: a key's row is one of `WINDOW` consecutive rows from the one its hash picks; a row
whose counts are all zero can be taken by another key. A key that finds none free (thousands
of keys with calls in flight at once) is `UNSHARED`. The hash is keyed with a secret of the
table, so callers cannot pick addresses that fill one window.

Changes: the header's page also holds a board of change counters. A process that changed
something other processes keep a copy of (a model's ACLs) counts the change on the board
before its caller hears of it (`SlotTable.note_change`); the others compare the counter with
the one their copy was read under (`SlotTable.changes`), so the next call through any
process reads the change, as it would through one process:

    table.note_change("acl:/sax/test/lm")       # after a SetAcl, before its reply
    table.changes("acl:/sax/test/lm")           # another process: not what its read saw

Keys share `BOARD` counters by hash: a change of one may have another key read again too.

Every process of the stack runs one event loop on one thread: a `SlotTable` is not for
threads (``flock`` does not exclude two threads sharing a file descriptor).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import secrets
import struct
import time

log = logging.getLogger(__name__)

#: Rows of a table: keys with calls in flight at once, with room for the hash to spread them.
ROWS = 8192
#: How many rows from its hash's own a key may take.
WINDOW = 16
#: `SlotTable.take` could not count in the table (no free row, or its lock stayed taken).
UNSHARED = -1
#: How long a call waits for the table's lock, held for microseconds by whoever has it:
#: longer only when its holder was stopped (SIGSTOP, a frozen container) or, on a loaded
#: machine, descheduled (then for milliseconds: a bench process that did nothing but take
#: and give, on 2 busy cores, once made another wait past 50 ms).
LOCK_WAIT_S = 0.2
#: After such a wait, calls count in their own process without waiting, for this long.
STUCK_S = 1.0
#: How long a starting worker waits for its own lock (a predecessor still exiting).
WORKER_WAIT_S = 10.0

_MAGIC = b"saxgwslt"
_VERSION = 1
_HEADER = struct.Struct("<8sIII16s")  # magic, version, workers, rows, the hash's secret
_DATA = 4096  # the columns start a page in
_BOARD = 64  # the change counters: the rest of the header's page
#: Change counters on the board (`SlotTable.note_change`).
BOARD = (_DATA - _BOARD) // 8
#: struct flock, for open file description locks (F_OFD_SETLK): l_type, l_whence, l_start,
#: l_len, l_pid (0), padded as the kernel's 64-bit layout is.
_FLOCK = struct.Struct("@hhqqi4x")


class AtLimit(Exception):
    """The key holds ``held`` (at least the limit) across the stack's processes."""

    def __init__(self, held: int) -> None:
        super().__init__(held)
        self.held = held


class TableError(RuntimeError):
    """The table file is missing, not a table, or this worker's column is taken."""


def _size(workers: int, rows: int) -> int:
    return _DATA + rows * 8 + workers * rows * 4


def create(path: str, workers: int, rows: int = ROWS) -> None:
    """Writes a new table for ``workers`` processes at ``path`` (replacing any), zeroed."""
    if workers < 1 or rows < WINDOW or rows & (rows - 1):
        raise ValueError(
            f"a table needs workers >= 1 and a power of two rows; got {workers}, {rows}"
        )
    partial = f"{path}.new"
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, _size(workers, rows))  # sparse: pages are made as rows are used
        os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, workers, rows, secrets.token_bytes(16)), 0)
    finally:
        os.close(fd)
    os.rename(partial, path)  # whole, or not there: a worker never maps half a header


class SlotTable:
    """This process's view of the table at ``path``, as worker ``worker`` (its column).
    ``inherited``: a descriptor of the table that this process inherited (then ``path`` only names
    it in messages), opened again here and closed: locks are an open file description's, and
    the one inherited is every other gateway's too."""

    def __init__(self, path: str, worker: int, inherited: int | None = None) -> None:
        self.path, self.worker = path, worker
        try:
            # /proc/self/fd/N opens the file N is, its name removed or not.
            fd = os.open(path if inherited is None else f"/proc/self/fd/{inherited}", os.O_RDWR)
        except OSError as exc:
            raise TableError(f"cannot open the slot table {path}: {exc.strerror}") from None
        finally:
            if inherited is not None:
                with contextlib.suppress(OSError):
                    os.close(inherited)
        try:
            head = os.pread(fd, _HEADER.size, 0)
            magic, version, workers, rows, secret = _HEADER.unpack(head.ljust(_HEADER.size, b"\0"))
            if (
                magic != _MAGIC
                or version != _VERSION
                or os.fstat(fd).st_size != _size(workers, rows)
            ):
                raise TableError(f"{path} is not a slot table of this version")
            if not 0 <= worker < workers:
                raise TableError(f"worker {worker} is not one of the {workers} of {path}")
            self._map = mmap.mmap(fd, _size(workers, rows))
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._secret = fd, bytes(secret)
        self._rows: int = rows
        view = memoryview(self._map)
        self._hashes = view[_DATA : _DATA + rows * 8].cast("Q")
        self._counts = view[_DATA + rows * 8 :].cast("i")
        self._board = view[_BOARD:_DATA].cast("Q")
        view.release()  # the casts hold the map on their own; `close` releases them
        self._columns = tuple(c * rows for c in range(workers))
        self._mine = self._columns[worker]
        self._zeros = memoryview(bytes(4 * rows)).cast("i")
        self._keys: dict[str, int] = {}
        self._stuck_until = 0.0
        self._warned = 0.0
        # Our life lock is held until this process exits.
        self._hold_own_life()
        self._zero(worker)  # what a killed predecessor held is free again

    def _life(self, worker: int, lock: bool) -> bool:
        """Takes (or lets go of) the life lock of ``worker``; whether it was free."""
        kind = fcntl.F_WRLCK if lock else fcntl.F_UNLCK
        try:
            fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, worker, 1, 0))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False  # another description holds it: that worker runs
            raise
        return True

    def _hold_own_life(self) -> None:
        deadline = time.monotonic() + WORKER_WAIT_S
        while True:
            if self._life(self.worker, lock=True):
                return
            # Held a moment by a process zeroing this column, or by another process that
            # runs as this worker (two started with one index): that one must not be
            # joined, or each would zero the other's counts.
            if time.monotonic() > deadline:
                self.close()
                raise TableError(
                    f"worker {self.worker} of {self.path} is held by another process"
                ) from None
            time.sleep(0.01)

    def close(self) -> None:
        """Unmaps the table and lets go of this worker's column (as exiting does)."""
        self._hashes.release()
        self._counts.release()
        self._board.release()
        self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _zero(self, worker: int) -> None:
        start = self._columns[worker]
        self._counts[start : start + self._rows] = self._zeros

    def _hash(self, key: str) -> int:
        found = self._keys.get(key)
        if found is None:
            digest = hashlib.blake2b(key.encode(), digest_size=8, key=self._secret).digest()
            found = int.from_bytes(digest, "little") or 1  # 0 marks a row never used
            if len(self._keys) >= 10_000:  # keys come from callers (addresses): bounded
                self._keys.clear()
            self._keys[key] = found
        return found

    def _sum(self, row: int) -> int:
        counts, total = self._counts, 0
        for start in self._columns:
            total += counts[start + row]
        return total

    def _row(self, wanted: int) -> int:
        """The row of the key hashed to ``wanted``: its own if it has one in its window,
        else the first there that holds no calls; `UNSHARED` if none does."""
        hashes, mask, free = self._hashes, self._rows - 1, UNSHARED
        row = wanted & mask
        for _ in range(WINDOW):
            found = hashes[row]
            if found == wanted:
                return row
            if found == 0:  # never used: no key's row lies beyond it
                return row if free == UNSHARED else free
            if free == UNSHARED and self._sum(row) == 0:
                free = row
            row = (row + 1) & mask
        return free

    def _lock(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now < self._stuck_until:
            return False
        deadline, tries = now + LOCK_WAIT_S, 0
        while time.monotonic() < deadline:
            # Its holder needs a few microseconds of CPU: first offered ours, then, if it
            # waits for a core (a loaded machine), left some by sleeping.
            if tries < 20:
                os.sched_yield()
            else:
                time.sleep(0.0001)
            tries += 1
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue
        self._stuck_until = time.monotonic() + STUCK_S
        self._warn("its lock stayed taken (a gateway process stopped?)")
        return False

    def _warn(self, why: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 60:
            self._warned = now
            log.warning(
                "slot table %s: %s; per-client and per-model limits count in each process alone "
                "meanwhile",
                self.path,
                why,
            )

    def take(self, key: str, limit: int) -> int:
        """Counts one more of ``key`` in this worker's column if the stack holds fewer than
        ``limit``; returns the row to `give` back, or `UNSHARED` (not counted here: count it
        in this process). Raises `AtLimit` with what the stack holds."""
        wanted = self._hash(key)
        if not self._lock():
            return UNSHARED
        try:
            row = self._row(wanted)
            if row == UNSHARED:
                self._warn(
                    f"no free row for {key!r} (more keys with calls in flight than it holds)"
                )
                return UNSHARED
            held = self._sum(row)
            if held >= limit and self._free_the_dead(row):
                held = self._sum(row)
            if held >= limit:
                raise AtLimit(held)
            self._hashes[row] = wanted
            self._counts[self._mine + row] += 1
            return row
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def give(self, row: int) -> None:
        """Gives back what `take` counted in ``row``. No lock: only this process writes its
        column, and a process reading it meanwhile sees the count before or after."""
        self._counts[self._mine + row] -= 1

    def note_change(self, key: str) -> None:
        """Counts a change of ``key`` on the board, for the stack's other processes. Under the
        table's lock: two processes counting one counter at once must not count once."""
        counter = self._hash(key) % BOARD
        locked = self._lock()  # a stuck lock: counted without it, a count lost at worst
        try:
            self._board[counter] = (self._board[counter] + 1) & 0xFFFFFFFFFFFFFFFF
        finally:
            if locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def changes(self, key: str) -> int:
        """The board's counter of ``key``: it differs from an earlier reading once some
        process of the stack has noted a change of ``key`` (or of a key sharing it)."""
        return int(self._board[self._hash(key) % BOARD])

    def held(self, key: str) -> int:
        """What the stack holds of ``key`` now (for tests and reports)."""
        wanted = self._hash(key)
        row = self._row(wanted)
        return self._sum(row) if row != UNSHARED and self._hashes[row] == wanted else 0

    def _free_the_dead(self, row: int) -> bool:
        """Zeroes the columns of workers that hold some of ``row`` but no longer run (their
        life lock is free); whether it found any. Only on the way to a refusal: its cost (a
        lock attempt per such worker) is not paid by calls that are admitted."""
        freed = False
        for worker, start in enumerate(self._columns):
            if worker == self.worker or not self._counts[start + row]:
                continue
            if not self._life(worker, lock=True):
                continue  # it runs
            try:
                log.info("slot table %s: worker %d is gone; its slots are free", self.path, worker)
                self._zero(worker)
                freed = True
            finally:
                self._life(worker, lock=False)
        return freed
