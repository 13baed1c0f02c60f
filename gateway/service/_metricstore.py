"""The files a gateway process keeps its metrics in, made so that a full or read-only metrics
directory costs its metrics, never its calls.

prometheus_client (0.26) keeps each process's values in a file it grows with ``truncate`` and
maps: a sparse file, whose pages the filesystem allocates only when a value is first written.
On a full filesystem that write is SIGBUS, and the gateway died at its first call, and again
after each restart; on a read-only one, opening the file raised in the middle of a call, or
of start-up. `ReservedFile` reserves a file's blocks (``posix_fallocate``) before mapping
them, so a full filesystem is an ``OSError`` at the reservation; on any such refusal it moves
the file's values to memory (a memfd, mapped the same way) and the process goes on with its
metrics unexported, saying so once in its log. The ops server's scrape reports such a
directory as ``saxgw_metrics_dir_writable 0`` (gateway/ops/_server.py).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from typing import BinaryIO, cast

from prometheus_client import mmap_dict, values

from gateway.common import metricsfiles

log = logging.getLogger(__name__)

_warned: set[str] = set()


def _refused(filename: str, exc: OSError) -> None:
    directory = os.path.dirname(filename)
    if directory not in _warned:  # once per directory: the cause is the same for every file
        _warned.add(directory)
        log.warning(
            "the metrics directory %s refused this process's metrics (%s): they stay in "
            "memory, unexported, until the process restarts; its calls are not affected",
            directory,
            exc.strerror or exc,
        )


def _memory_file(contents: bytes, size: int) -> BinaryIO:
    """A file in memory holding ``contents``, ``size`` bytes long, as the mapped one was."""
    f = cast(BinaryIO, os.fdopen(os.memfd_create("saxgw-metrics"), "a+b"))
    f.truncate(size)
    f.seek(0)
    f.write(contents)
    f.flush()
    return f


def _reserve_file(filename: str) -> None:
    """Creates ``filename`` (if new) with its first blocks reserved. A new file that cannot
    be reserved is removed: an empty ``.db`` file fails the ops server's every scrape."""
    with open(filename, "a+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            metricsfiles.reserve(f.fileno(), size or mmap_dict._INITIAL_MMAP_SIZE)
        except OSError:
            if size == 0:
                with contextlib.suppress(OSError):
                    os.unlink(filename)
            raise


class ReservedFile(mmap_dict.MmapedDict):
    """prometheus_client's file of values, its blocks reserved before they are mapped, moved
    to memory when the directory refuses them."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        self._in_memory = False
        try:
            _reserve_file(filename)
            super().__init__(filename, read_mode)  # type: ignore[no-untyped-call]
        except OSError as exc:
            _refused(filename, exc)
            self._fname = filename
            self._positions: dict[str, int] = {}
            self._used = 8
            self._to_memory(mmap_dict._INITIAL_MMAP_SIZE)
            mmap_dict._pack_integer(self._m, 0, self._used)  # type: ignore[no-untyped-call]

    def _to_memory(self, capacity: int) -> None:
        """Moves the values mapped so far (none if the file never opened) to memory."""
        contents = bytes(self._m[: self._used]) if getattr(self, "_m", None) else b""
        old = getattr(self, "_f", None)
        if old is not None:
            self._m.close()
            old.close()
        self._f = _memory_file(contents, capacity)
        self._capacity = capacity
        self._m = mmap.mmap(self._f.fileno(), capacity)
        self._in_memory = True

    def _init_value(self, key: str) -> None:
        """Adds ``key``, having reserved the blocks the library grows the file by for it."""
        entry = metricsfiles.entry_bytes(key)
        capacity = self._capacity
        while self._used + entry > capacity:
            capacity *= 2
        if capacity != self._capacity and not self._in_memory:
            try:
                metricsfiles.reserve(self._f.fileno(), capacity)
            except OSError as exc:
                _refused(self._fname, exc)
                self._to_memory(self._capacity)  # the library grows the memory file itself
        super()._init_value(key)  # type: ignore[no-untyped-call]


def install() -> None:
    """Makes prometheus_client's multiprocess values use `ReservedFile` (its values module
    names the class it opens files with, at each opening)."""
    setattr(values, "MmapedDict", ReservedFile)  # noqa: B010 - not exported
