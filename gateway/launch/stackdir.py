"""A stack's private temporary directory, and the removal of those that killed stacks left.

Each stack keeps its rendered Envoy config (which may hold API keys), its TLS secrets, the
gateways' metrics files and their shared per-client counts (gateway/common/slottable.py) in
``$TMPDIR/saxgw-XXXX`` (mode 0700). A stack that stops removes it; one killed (SIGKILL, out
of memory, a power cut) cannot, and its directory stayed for good. So the directory names its
owner, the process that made it (pid, start time, PID namespace, boot), and every stack that
starts removes those whose owner no longer runs:

    tmp = stack_dir()   # stale ones removed first; tmp.cleanup() at the end

A directory that cannot be proven dead is left alone: one without a readable owner file (made
by an older saxgw, or by a stack still setting it up), another user's, a symbolic link, one whose
owner is in another PID namespace (a container sharing /tmp) and so cannot be looked up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "saxgw-"
OWNER_FILE = "owner.json"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return None


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot, /proc's ``starttime``); None if no such
    process. With the pid it names one process for good: a pid used again starts later."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its last ")".
    return int(text.rsplit(")", 1)[1].split()[19])


def _pid_namespace() -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return None


def owner() -> dict[str, Any]:
    """This process, as a directory's owner file records it."""
    pid = os.getpid()
    return {
        "pid": pid,
        "start_time": _start_time(pid),
        "pid_namespace": _pid_namespace(),
        "boot_id": _read(_BOOT_ID),
    }


def _owner_gone(directory: str) -> bool:
    """Whether the process that made ``directory`` is proven to run no more."""
    try:
        fd = os.open(os.path.join(directory, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as file:
            record = json.load(file)
        pid, started = int(record["pid"]), int(record["start_time"])
    except (OSError, ValueError, TypeError, KeyError):
        return False  # no owner file (an older saxgw, or one being written): not proven
    boot = _read(_BOOT_ID)
    if boot and record.get("boot_id") and record["boot_id"] != boot:
        return True  # the machine restarted since: nothing of that boot runs
    if record.get("pid_namespace") != _pid_namespace():
        return False  # that pid means another process here
    return _start_time(pid) != started


def remove_stale(root: Path) -> list[Path]:
    """Removes the stack directories in ``root`` whose owner is proven gone; returns them."""
    removed = []
    uid = os.getuid()
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if not entry.name.startswith(PREFIX):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            if _owner_gone(entry.path):
                # rmtree never follows a link inside (and refuses one at the top); another
                # stack starting now may be removing the same directory.
                shutil.rmtree(entry.path, ignore_errors=True)
                if not os.path.lexists(entry.path):
                    log.info("removed %s, left by a stack that no longer runs", entry.path)
                    removed.append(Path(entry.path))
    return removed


def stack_dir() -> tempfile.TemporaryDirectory[str]:
    """A new private directory (0700) with its owner file, after removing stale ones."""
    remove_stale(Path(tempfile.gettempdir()))
    tmp = tempfile.TemporaryDirectory(prefix=PREFIX)
    # Written whole, then renamed: a stack reading it meanwhile finds no file, not half a one.
    partial = Path(tmp.name) / f".{OWNER_FILE}"
    partial.write_text(json.dumps(owner()))
    partial.rename(Path(tmp.name) / OWNER_FILE)
    return tmp
