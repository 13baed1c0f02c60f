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
from typing import Any, BinaryIO, cast

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


def release(dropped: list[Any]) -> None:
    """Lets the values of ``dropped`` children (counters, gauges, histograms: series dropped
    from their families) be collected. prometheus_client's multiprocess value class keeps
    every value it ever made in a list of its own (to remap them all after a fork, which a
    gateway process never does), so a dropped series stayed in memory for good; and its file
    kept each value's key (~300 characters) in memory too, to find it again.

    A counter's or histogram's entry stays in the file, as every value written must, but the
    file forgets where it is: a series made again under the same labels (the model published
    anew) gets an entry of its own, from 0, and the scrape and the ops server's fold, which
    add up every entry of a key, count on from the old total. A gauge's entry (a gone
    model's replicas, NaN) keeps its place: gauges are not added up but picked, so the new
    value must overwrite it."""
    found = [v for child in dropped for v in _values_of(child)]
    for value in found:
        params, file = getattr(value, "_params", None), getattr(value, "_file", None)
        positions = getattr(file, "_positions", None)
        if params and params[0] in ("counter", "histogram") and isinstance(positions, dict):
            positions.pop(getattr(value, "_key", None), None)
    owned = {id(v) for v in found}
    registry = _value_registry()
    if not owned or registry is None:
        return
    registry[:] = [v for v in registry if id(v) not in owned]


def _values_of(child: Any) -> list[Any]:
    found = [getattr(child, "_value", None), getattr(child, "_sum", None)]
    found += getattr(child, "_buckets", None) or []
    return [v for v in found if v is not None]


def _value_registry() -> list[Any] | None:
    """The list prometheus_client's multiprocess value class appends each new value to (a
    variable of the function that made the class), or None if this version has none."""
    init = getattr(values.ValueClass, "__init__", None)
    code, cells = getattr(init, "__code__", None), getattr(init, "__closure__", None)
    if code is None or not cells or "values" not in code.co_freevars:
        return None
    found = cells[code.co_freevars.index("values")].cell_contents
    return found if isinstance(found, list) else None
