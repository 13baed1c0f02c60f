"""Folding gone gateway processes' counters and histograms into one archive file per type, so
that the metrics directory holds the live processes' files and the archives, however many
processes have come and gone.

A gateway process's counters and histograms must outlive it (totals never go backwards); left
as they were, the files of every process that ever ran (~256 KB each) would stay, and every
scrape would read them all: a crash-looping gateway would grow both without bound. So at each
scrape the ops server adds each type's files of the gone processes (`metricsfiles.forget_gone`
says which) into that type's archive, ``counter_archive.db`` or ``histogram_archive.db``, and
removes them. An archive is a file of prometheus_client's own format (``MmapedDict``),
holding for each key the sum of its values in the files it took in, so the collector reads it
as one more process and every scraped value is the same sum: counts exactly; a float ``_sum``
up to rounding in its last bit, which the order files are read in (the directory's) decides
anyway.

A fold happens under the directory's lock held alone (`metricsfiles.scraping`): no scrape
reads half of one. And it must survive the ops server being killed (SIGKILL) at any point,
neither losing a file's values nor counting them twice. So it goes in steps, and a journal,
written once the new archives are complete, decides it:

1. merge: each type's archive and the files it takes in are added up into ``<archive>.new``
   (blocks reserved first, so a full directory is an error rather than SIGBUS), synced.
   ``.new`` files are not ``*.db``: no scrape reads them. Killed here, nothing has changed
   but these strays, which the next fold removes.
2. commit: the journal, ``fold.journal`` (each ``.new`` and the archive it replaces, and the
   files taken in), is written as ``fold.journal.new``, synced, and renamed into place. That
   rename decides the fold: before it the old files stand; after it the fold is finished,
   by this process or by the next one to take the lock.
3. install: each ``.new`` is renamed over its archive (atomically: the old archive's values
   are in the new one).
4. absorb: each file taken in is removed.
5. done: the journal is removed.

Killed after 2, the fold is decided but half done: after 3 the directory holds a new archive
and the files in it at once, which a scrape would count twice. So `finish` runs before any
scrape reads the files, at start and in every scrape, under the lock: it renames what the
journal names that is still ``.new``, removes the absorbed files still there, then the
journal. Each of its steps can be done again, so a kill during `finish` is finished the next
time.

A removed file's name returns only with its pid in its PID namespace; if that happens between
a kill and the next scrape, the newcomer's file is removed with the rest (its counts lost,
never counted twice). A scrape that could not take the lock alone (a flush stopped holding
it, see `metricsfiles.scraping`) neither folds nor finishes a fold, and one ops server per
directory is assumed: another's scrape that waits out ``LOCK_WAIT_S`` while a fold runs reads
anyway, and may see half of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import mmap_dict

from gateway.common import metricsfiles

log = logging.getLogger(__name__)

#: A gateway process's file types whose values outlive it, added up over processes: all but
#: its live gauges, which go with it (the gateway's families: gateway/service/_metrics.py).
KINDS = ("counter", "histogram")
JOURNAL = "fold.journal"
#: The suffix of a fold's files before they are in place: not ``.db``, so never collected.
_NEW = ".new"

_warned: set[str] = set()


def archive_name(kind: str) -> str:
    return f"{kind}_archive.db"  # read as its kind by the collector (the name's first word)


def fold(directory: str, gone: Iterable[str]) -> None:
    """Folds the counter and histogram files of the ``gone`` processes (`process_id` names)
    into the archives. The caller holds the directory's lock alone. A directory that refuses
    the new archive (full, read-only) keeps the files, to be folded at a later scrape; an
    error once the fold is committed is raised: the scrape must not read half of it."""
    finish(directory)
    absorbed = {kind: _files(directory, kind, gone) for kind in KINDS}
    absorbed = {kind: names for kind, names in absorbed.items() if names}
    if not absorbed:
        return
    journal = {
        "replace": {archive_name(kind) + _NEW: archive_name(kind) for kind in absorbed},
        "absorb": [name for names in absorbed.values() for name in names],
    }
    try:
        for kind, names in absorbed.items():
            archive = archive_name(kind)
            sums = _sums(os.path.join(directory, name) for name in [archive, *names])
            _write(os.path.join(directory, archive + _NEW), sums)
        _write_journal(directory, journal)  # the commit
    except OSError as exc:
        _remove_strays(directory)
        if directory not in _warned:  # once: a full directory refuses at every scrape
            _warned.add(directory)
            log.warning("cannot fold gone processes' metrics files in %s: %s", directory, exc)
        return
    _warned.discard(directory)
    finish(directory)


def finish(directory: str) -> None:
    """Finishes the fold a journal names (committed by a fold that was killed), and removes a
    fold's files left from before its commit; nothing else."""
    try:
        text = Path(directory, JOURNAL).read_text()
    except FileNotFoundError:
        pass
    else:
        journal = json.loads(text)
        for new, archive in journal["replace"].items():
            with contextlib.suppress(FileNotFoundError):  # renamed before the kill
                os.rename(_in(directory, new), _in(directory, archive))
        _sync_directory(directory)  # the archives in place before the files in them go
        for name in journal["absorb"]:
            Path(_in(directory, name)).unlink(missing_ok=True)
        Path(directory, JOURNAL).unlink()
    _remove_strays(directory)


def _in(directory: str, name: str) -> str:
    """``name`` (from a journal) in ``directory``, and nowhere else."""
    return os.path.join(directory, os.path.basename(name))


def _files(directory: str, kind: str, gone: Iterable[str]) -> list[str]:
    names = [f"{kind}_{ident}.db" for ident in sorted(gone)]
    return [name for name in names if os.path.exists(os.path.join(directory, name))]


def _sums(paths: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Each key's values added up over the files (a missing or empty one has none), with the
    latest timestamp."""
    sums: dict[str, tuple[float, float]] = {}
    for path in paths:
        try:
            if os.stat(path).st_size == 0:  # created, never sized: the collector skips it too
                continue
        except FileNotFoundError:  # the first fold's archive
            continue
        read = mmap_dict.MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
        for key, value, timestamp, _ in read:
            total, latest = sums.get(key, (0.0, 0.0))
            sums[key] = (total + value, max(latest, timestamp))
    return sums


def _write(path: str, sums: dict[str, tuple[float, float]]) -> None:
    """A file of ``sums`` in prometheus_client's format, its blocks reserved before they are
    written through the library's mapping, and synced."""
    size = 8 + sum(metricsfiles.entry_bytes(key) for key in sums)  # the header, the values
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        metricsfiles.reserve(fd, max(size, mmap_dict._INITIAL_MMAP_SIZE))  # the file's size
    finally:
        os.close(fd)
    values = mmap_dict.MmapedDict(path)  # type: ignore[no-untyped-call]
    try:
        for key, (value, timestamp) in sums.items():
            values.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        values.close()  # type: ignore[no-untyped-call]
    _sync(path)


def _write_journal(directory: str, journal: Mapping[str, object]) -> None:
    path = os.path.join(directory, JOURNAL)
    with open(path + _NEW, "w", encoding="utf-8") as f:
        json.dump(journal, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(path + _NEW, path)
    _sync_directory(directory)


def _remove_strays(directory: str) -> None:
    """Removes the files a fold writes before its commit, by name: the directory may hold
    others' ``*.new`` files (it is a volume anyone can mount), which are none of ours."""
    for name in [*(archive_name(kind) + _NEW for kind in KINDS), JOURNAL + _NEW]:
        path = Path(directory, name)
        # Looked for first: on a read-only filesystem, unlink refuses (EROFS) even a file that
        # is not there, and a read-only directory must cost metrics only, never the scrape.
        if path.exists():
            path.unlink(missing_ok=True)


def _sync(path: str) -> None:
    """Its data on disk (a kill alone would not lose it; a node's crash would): the pages
    written through a mapping are the file's page cache, which ``fsync`` writes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse a directory's fsync
        _sync(directory)
