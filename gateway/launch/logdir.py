"""One stack at a time writes in a log directory.

Each stack names its logs by role (``cell.log``, ``gateway-0.log``, ``envoy.log``): two
stacks given one ``--log-dir`` wrote into the same files, line between line, and a start that
failed quoted the other stack's last lines as its cause. `saxgw up|serve` holds a lock on
``.saxgw.lock`` in the directory for its life, with its pid in it; the kernel drops the lock
when the process ends, however it ends::

    with hold_log_dir("/var/log/saxgw"):    # or LogDirInUse("pid 123 (saxgw up ...)")
        ...start the stack...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.common.lockfile import HeldBy, take
from gateway.launch.ports import describe

LOCK_FILE = ".saxgw.lock"
#: The directories this process holds, each with its lock's descriptor (`hold_log_dir`).
_held: dict[Path, int] = {}


class LogDirInUse(Exception):
    """Another `saxgw up|serve` (``holder``) writes its logs in the directory."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def hold_log_dir(directory: str) -> Iterator[None]:
    """Holds ``directory`` for this process's stack until the block ends; raises
    `LogDirInUse` if another process holds it. A directory that cannot hold the lock file
    (read-only) is the children's logs' to report."""
    folder = Path(os.path.abspath(directory))  # as `hold_again` is given it, however spelt
    try:
        _held[folder] = take(folder / LOCK_FILE, str(os.getpid()))
    except HeldBy as held:
        pid = held.holder.strip()
        raise LogDirInUse(describe(int(pid) if pid.isdigit() else None)) from None
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.close(_held.pop(folder))


def hold_again(directory: Path) -> None:
    """Takes the lock again in ``directory``, made again after it was removed (a child's log
    opened there: `processes`), if this process held it: its lock file went with it, and a
    second stack given the directory started and wrote into the same logs."""
    directory = Path(os.path.abspath(directory))
    fd = _held.get(directory)
    if fd is None:
        return
    with contextlib.suppress(HeldBy, OSError):  # another stack took it first: its own now
        _held[directory] = take(directory / LOCK_FILE, str(os.getpid()))
        os.close(fd)
