"""What a process does once the reader of its stdout has gone (`| head -1`, a closed
terminal): its later lines, and the flush at exit of what one left, go nowhere, quietly."""

from __future__ import annotations

import contextlib
import os
import sys


def discard_stdout() -> None:
    """Points stdout at /dev/null: without it, every later print raised again, and the
    interpreter's flush at exit printed "Exception ignored ... BrokenPipeError"."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
