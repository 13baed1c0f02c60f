"""Who holds a TCP port: so that `saxgw up` reports a leftover process instead of taking it
for a healthy stack."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on ``port`` (None if none, or not visible to us)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fds / fd) in wanted for fd in os.listdir(fds)):
                return int(pid)
    return None


def holder(port: int) -> str | None:
    """``"pid 123 (command line)"`` of the process listening on ``port``, ``"another
    process"`` if it cannot be seen (another user), or None if nothing listens there."""
    if not _listening_inodes(port):
        return None
    pid = listener_pid(port)
    if pid is None:
        return "another process"
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        return f"pid {pid} ({command[:100]})"
    return f"pid {pid}"
