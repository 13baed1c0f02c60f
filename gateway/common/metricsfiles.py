"""How gateway processes name their files in a shared metrics directory, and how the ops server
tells which of those processes are gone.

prometheus_client's multiprocess mode keeps each process's values in files named after the
process. Named by pid alone, two gateways in two containers (``docker compose up --scale
gateway=2``: each its own PID namespace, one shared volume) would both be pid 1 and write the
same files; and a gateway restarted in its container, pid 1 again, would start its calls-in-
flight gauges from its dead predecessor's values. So a process is named ``<pid>-<namespace>``,
its PID namespace's inode, unique on the host while the process lives.

Gone processes' live gauges (calls in flight, open streams) must be dropped, their counters
kept (the ops server folds them into one archive per type: gateway/ops/_fold.py). A process in
the ops server's own PID namespace is gone when its pid is; one in another namespace cannot be
looked up, so each process also touches a heartbeat file at every metrics flush, and one
silent for `STALE_AFTER_S` (or whose heartbeat is missing) is gone: its live gauges go. Its
counts are folded only once it has been silent for `SETTLED_AFTER_S`, which no stall lasts.

A flush writes several files (one per metric type), and a scrape reads them one after another:
read across a flush, a scrape could pair a call's new histogram count with its old request
count. A lock file orders the two: flushes share it, a scrape takes it alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

#: A heartbeat older than this (seconds) marks a process in another PID namespace as gone. The
#: gateway touches it every second (``FLUSH_INTERVAL_S``).
STALE_AFTER_S = 30.0
#: ... and one older than this, as gone for good: its counters and histograms may be folded
#: into the archives (gateway/ops/_fold.py). A process that stalled (a paused container) and
#: then resumed writes on into files it no longer finds, so its later counts would be lost:
#: its live gauges go at `STALE_AFTER_S`, its counts only after a stall no process survives.
SETTLED_AFTER_S = 600.0

#: A process's files: ``<kind>_<pid>[-<namespace>].db`` (``counter``, ``histogram``,
#: ``gauge_livesum``...) and its heartbeat ``<pid>[-<namespace>].alive``.
_PROCESS_FILE = re.compile(r"(?:[a-z]+(?:_live[a-z]+)?_)?(\d+)(?:-(\d+))?\.(?:db|alive)")
_ids: dict[int, str] = {}


def _pid_namespace() -> str:
    """The inode of this process's PID namespace ("" where /proc cannot tell)."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    return "".join(c for c in link if c.isdigit())


def process_id() -> str:
    """This process's name in metrics file names. prometheus_client calls it on every value
    it writes (to notice a fork), so it is computed once per pid."""
    pid = os.getpid()
    ident = _ids.get(pid)
    if ident is None:
        namespace = _pid_namespace()
        ident = _ids[pid] = f"{pid}-{namespace}" if namespace else str(pid)
    return ident


_LOCK_FILE = "flush.lock"  # not *.db: the collector reads those only


#: The longest a flush at exit or a scrape waits for the lock. Held for microseconds, it is
#: only held longer by a process stopped (SIGSTOP) in that window; a scrape then reads anyway
#: rather than hang, and so does a gateway's last flush.
LOCK_WAIT_S = 1.0


@contextlib.contextmanager
def _locked(directory: str, operation: int, wait_s: float) -> Iterator[bool]:
    """Holds the directory's lock (``fcntl.flock`` ``operation``) inside the block, waiting
    for it up to ``wait_s``; yields False if it stayed taken. A directory without a lock file
    (gone, read-only) yields True: unordered writes and reads are better than none."""
    try:
        fd = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield True
        return
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.002)
        yield True
    finally:
        os.close(fd)  # releases the lock


def flushing(directory: str, *, wait: bool) -> contextlib.AbstractContextManager[bool]:
    """A gateway process's hold on the lock while it flushes (shared with other processes'
    flushes). Without ``wait``, yields False at once while a scrape reads, and the event loop
    goes on: the counts stay in memory for the next flush, a second later. With ``wait`` (the
    last flush, at exit), waits up to ``LOCK_WAIT_S``."""
    return _locked(directory, fcntl.LOCK_SH, LOCK_WAIT_S if wait else 0.0)


def scraping(directory: str) -> contextlib.AbstractContextManager[bool]:
    """The ops server's hold on the lock while it reads every process's files: no flush is
    half written meanwhile. Flushes take microseconds, so the wait is short (at most
    ``LOCK_WAIT_S``, then it reads anyway)."""
    return _locked(directory, fcntl.LOCK_EX, LOCK_WAIT_S)


def _heartbeat_path(directory: str, ident: str) -> Path:
    return Path(directory, f"{ident}.alive")  # not *.db: the collector reads those only


def join(directory: str) -> None:
    """Called once, before this process makes its first metric: a process with this name
    before it has exited (a reused pid), so its live gauges go; then the first heartbeat."""
    ident = process_id()
    mark_process_dead(ident, directory)  # type: ignore[no-untyped-call]
    heartbeat(directory)


def heartbeat(directory: str) -> None:
    """Tells the ops server this process is still there. A directory that went away (its
    volume unmounted) must not stop the flushes that call this: the values live in memory."""
    with contextlib.suppress(OSError):
        _heartbeat_path(directory, process_id()).touch()


def leave(directory: str) -> None:
    """At a clean exit, after the last flush: its live gauges and heartbeat go now."""
    ident = process_id()
    mark_process_dead(ident, directory)  # type: ignore[no-untyped-call]
    _heartbeat_path(directory, ident).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Heartbeat file -> its mtime when this process last read it, `time.monotonic` then, and the
#: heartbeat's age then (`_heartbeat_age`).
_beats: dict[str, tuple[float, float, float]] = {}


def _heartbeat_age(path: Path, wall: float, mono: float) -> float:
    """Seconds since the heartbeat at ``path`` was last touched (FileNotFoundError if gone).

    Its mtime is on the wall clock, which NTP, a VM's resume or a hand may step: a step of
    an hour forward made every live process in another namespace look an hour silent until
    its next touch, and a scrape then (within the second) dropped its live gauges and folded
    its counts, which it went on writing into files no longer read; a step back kept a dead
    one's gauges for as long. So the wall clock only dates a heartbeat first seen, or one set
    back (by a touch after such a step, or by hand); after that its age grows on
    `time.monotonic`, and one touched since the last read is at most that old."""
    beat = path.stat().st_mtime
    age = max(0.0, wall - beat)
    last = _beats.get(str(path))
    if last is not None:
        mtime, read_at, then = last
        if beat == mtime:
            age = then + (mono - read_at)
        elif beat > mtime:
            age = min(age, mono - read_at)
    _beats[str(path)] = (beat, mono, age)
    return age


def _silence(directory: str, pid: int, namespace: str | None, own: str, now: float) -> float:
    """How long the process has been gone, in seconds: 0 while it lives, ``math.inf`` once it
    is gone for good (its pid in ``own``, the caller's PID namespace, is; or its heartbeat
    file is); else the age of its heartbeat (``now``: `time.time`)."""
    if namespace is None or namespace == own:
        return 0.0 if _pid_alive(pid) else math.inf
    try:
        return _heartbeat_age(
            _heartbeat_path(directory, f"{pid}-{namespace}"), now, time.monotonic()
        )
    except FileNotFoundError:
        return math.inf


def forget_gone(directory: str) -> set[str]:
    """Drops the live gauges of processes that are gone, and the heartbeats of those gone for
    good (`SETTLED_AFTER_S`); returns the names (`process_id`) of the latter. Their counters
    and histograms stay, so totals never go backwards (until the ops server folds them into
    its archives)."""
    now, own = time.time(), _pid_namespace()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:  # gone itself (unmounted, cleaned away)
        return set()
    here = Path(directory)
    for read in [Path(p) for p in _beats]:  # forgotten with their files
        if read.parent == here and read.name not in names:
            del _beats[str(read)]
    silences: dict[str, float] = {}
    for name in names:
        match = _PROCESS_FILE.fullmatch(name)
        if match is None:
            continue
        pid, namespace = int(match.group(1)), match.group(2)
        ident = f"{pid}-{namespace}" if namespace else str(pid)
        if ident not in silences:
            silences[ident] = _silence(directory, pid, namespace, own, now)
    settled = set()
    for ident, silence in silences.items():
        if silence > STALE_AFTER_S:
            with contextlib.suppress(FileNotFoundError):  # another scrape was first
                mark_process_dead(ident, directory)  # type: ignore[no-untyped-call]
        if silence > SETTLED_AFTER_S:
            _heartbeat_path(directory, ident).unlink(missing_ok=True)
            settled.add(ident)
    return settled


def reserve(fd: int, size: int) -> None:
    """Allocates the first ``size`` bytes of the file ``fd`` on disk, so that writing them
    through a mapping cannot fail later (where it would be SIGBUS, not an error); OSError
    (ENOSPC, EROFS...) now if the filesystem refuses."""
    os.posix_fallocate(fd, 0, size)


def entry_bytes(key: str) -> int:
    """The bytes a value under ``key`` takes in prometheus_client's file (``MmapedDict``, 0.26):
    the key's length, the key padded to 8 bytes, the value and its timestamp."""
    encoded = len(key.encode("utf-8"))
    return 4 + encoded + (8 - (encoded + 4) % 8) + 16


#: What a scrape reserves to tell whether the directory takes a new process's file
#: (prometheus_client's first file size).
_PROBE_BYTES = 1 << 16


def writable(directory: str) -> bool:
    """Whether ``directory`` takes a new metrics file now: a gateway process that starts, or
    meets a new label set, needs one. A full or read-only directory costs gateways their
    metrics (they keep them in memory, unexported), never their calls."""
    path = os.path.join(directory, f".writable-{os.getpid()}")  # not *.db: never collected
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return False
    try:
        reserve(fd, _PROBE_BYTES)
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
    return True
