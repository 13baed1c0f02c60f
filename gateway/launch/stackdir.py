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
import errno
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def start_time(pid: int) -> int | None:
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
        "start_time": start_time(pid),
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
    return start_time(pid) != started


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


class NoRoom(RuntimeError):
    """The stack's private directory's filesystem is full (or its quota spent)."""


@contextlib.contextmanager
def room_for_files(directory: str) -> Iterator[None]:
    """Turns a full filesystem under ``directory`` (the stack's, or the one it is made in)
    into `NoRoom`, which names it and what sets it: `saxgw up` on a nearly full TMPDIR
    ended in a traceback of the write that failed (Envoy's config, 220 KB)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise NoRoom(
            f"no room for the stack's private files in {directory} ({exc.strerror}): "
            "free some, or set TMPDIR to a directory with room"
        ) from exc


def stack_dir() -> tempfile.TemporaryDirectory[str]:
    """A new private directory (0700) with its owner file, after removing stale ones."""
    remove_stale(Path(tempfile.gettempdir()))
    tmp = tempfile.TemporaryDirectory(prefix=PREFIX)
    # Written whole, then renamed: a stack reading it meanwhile finds no file, not half a one.
    partial = Path(tmp.name) / f".{OWNER_FILE}"
    try:
        with room_for_files(tmp.name):
            partial.write_text(json.dumps(owner()))
    except NoRoom:
        tmp.cleanup()
        raise
    partial.rename(Path(tmp.name) / OWNER_FILE)
    return tmp


class KeptFiles:
    """The files a stack's children read when they start (Envoy's config and TLS secrets, the
    config snapshot, the owner file), as they were once the stack had started, to write again
    any that were removed while it runs: after a /tmp cleaner (systemd-tmpfiles removes what
    was not touched for 10 days), every child that exited could not start again, Envoy
    (`Invalid path: .../envoy.yaml`) and the gateways (`cannot read the config snapshot`)
    retried for good. ``keep``: those files, or directories of them; ``empty``: directories
    of runtime state (the metrics files), made again empty; ``remake``: files of runtime state
    made again new by their function (the per-client table)::

        kept = KeptFiles(Path(tmp.name), keep=[envoy_yaml, secrets], empty=[metrics_dir])
        kept.restore()   # before a child starts again
    """

    def __init__(
        self,
        directory: Path,
        keep: Sequence[Path],
        empty: Sequence[Path] = (),
        remake: Mapping[Path, Callable[[], None]] | None = None,
    ) -> None:
        self._directory = directory
        self._dirs = [d for d in empty if d.is_dir()]
        self._remake = {p: make for p, make in (remake or {}).items() if p.exists()}
        self._files: dict[Path, tuple[bytes, int]] = {}
        for kept in keep:
            for path in sorted(kept.rglob("*")) if kept.is_dir() else [kept]:
                if path.is_file() and not path.is_symlink():
                    self._files[path] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))

    def restore(self) -> None:
        """Writes again the kept files that are gone, and makes the ``empty`` directories,
        with a WARNING naming them; leaves the others as they are."""
        gone = [p for p in (*self._dirs, *self._files, *self._remake) if not p.exists()]
        if not gone:
            return
        self._directory.mkdir(mode=0o700, exist_ok=True)
        for directory in self._dirs:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in gone:
            if path in self._remake:
                self._remake[path]()
            elif path in self._files:
                data, mode = self._files[path]
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
        log.warning(
            "files of the stack's directory %s were removed while it ran (a cleaner of %s?); "
            "wrote them again: %s",
            self._directory,
            self._directory.parent,
            ", ".join(str(p.relative_to(self._directory)) for p in gone),
        )
