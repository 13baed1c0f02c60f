"""A lock file that names its holder: taken for the life of a process, and dropped by the
kernel when the process ends, however it ends (``flock`` on a descriptor kept open)::

    try:
        fd = take(path, "127.0.0.1:10000 /sax-root")   # held until os.close(fd), or exit
    except HeldBy as held:
        ...held.holder: what the process holding it wrote there...

Shared by the cell's admin (one admin's state per fs root) and `saxgw up|serve` (one stack
per log directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

_HOLDER_BYTES = 4096


class HeldBy(Exception):
    """Another process holds the lock; ``holder`` is what it wrote in the file."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def take(path: Path, holder: str, mode: int = 0o644) -> int:
    """Locks ``path`` (made with ``mode`` if absent) and writes ``holder`` in it: the lock's
    descriptor. Raises `HeldBy` if another process holds it, OSError if it cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held = os.pread(fd, _HOLDER_BYTES, 0).decode(errors="replace")
        os.close(fd)
        raise HeldBy(held) from None
    with contextlib.suppress(OSError):  # the holder's name only serves the message above
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
    return fd
