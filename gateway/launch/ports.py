"""Who holds a TCP port: so that `saxgw up` reports a leftover process instead of taking it
for a healthy stack; and claims on ports about to be bound, so that two `saxgw up` started
at the same moment cannot both find them free.

    with claim_ports([8888, 9901]):   # or PortClaimed(port, "pid 123 (saxgw up ...)")
        ...check that they are free, start the processes that bind them...
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterable, Iterator
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
    return _socket_owner(_listening_inodes(port))


def _socket_owner(inodes: set[str]) -> int | None:
    """The pid of a process holding one of the sockets ``inodes`` (None if none is seen)."""
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if not wanted.isdisjoint(open_files(pid)):
            return int(pid)
    return None


def open_files(pid: int | str) -> Iterator[str]:
    """What each descriptor of process ``pid`` refers to (``socket:[inode]`` for a socket),
    skipping those closed while read (a busy process such as Envoy closes some between the
    listing and the read: one such hid the whole process); none for a process gone or not
    ours to read."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fds)
    except OSError:
        return
    for fd in names:
        with contextlib.suppress(OSError):
            yield os.readlink(fds / fd)


def holder(port: int) -> str | None:
    """``"pid 123 (command line)"`` of the process listening on ``port``, ``"another
    process"`` if it cannot be seen (another user), or None if nothing listens there."""
    if not _listening_inodes(port):
        return None
    return describe(listener_pid(port))


def connection_end(port: int) -> str:
    """Who holds ``port`` when nothing listens on it: a connection's own end (a client's
    connection bound it, or the kernel gave it one from its range for that)."""
    plain = "a connection (nothing listens on it)"
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(n) for n in text.split())
    except (OSError, ValueError):
        return plain
    if not low <= port <= high:
        return plain
    return (
        f"a connection (nothing listens on it: the kernel gives connections their own port "
        f"from {low}-{high}, net.ipv4.ip_local_port_range, so ports there may be taken "
        "at any time)"
    )


def claimant(port: int) -> str | None:
    """``"pid 123 (command line)"`` (or ``"another process"``) of a claim on ``port`` held by
    any process, None if none: call it holding no claim of one's own there."""
    inodes = _claim_inodes(port)
    return describe(_socket_owner(inodes)) if inodes else None


def describe(pid: int | None) -> str:
    """``"pid 123 (command line)"``, or ``"another process"`` for None."""
    if pid is None:
        return "another process"
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        return f"pid {pid} ({command[:100]})"
    return f"pid {pid}"


class PortClaimed(Exception):
    """Another process (``holder``) has claimed ``port``: a `saxgw up` or `serve` that is
    starting or running on it."""

    def __init__(self, port: int, holder: str) -> None:
        super().__init__(f"port {port} is claimed by {holder}")
        self.port = port
        self.holder = holder


def _claim_name(port: int) -> str:
    return f"saxgw-port-{port}"


def _claim_inodes(port: int) -> set[str]:
    """Inodes of the sockets bound to the claim on ``port`` (``@name`` in /proc/net/unix)."""
    wanted = "@" + _claim_name(port)
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) == 8 and fields[7] == wanted:
                inodes.add(fields[6])
    return inodes


@contextlib.contextmanager
def claim_ports(ports: Iterable[int]) -> Iterator[None]:
    """Holds a claim on each of ``ports`` (0s skipped) until the block ends or the process
    exits, however it exits; raises `PortClaimed` if another process holds one.

    A claim is a Unix socket bound to a name in Linux's abstract namespace: no file to leave
    behind or to lack permission for, gone with the process that held it even after SIGKILL,
    and scoped, as TCP ports are, to a network namespace (containers on the host's network
    share it). Ports are claimed in order, so that of two processes wanting overlapping ports
    one always gets them all. Elsewhere than Linux nothing is claimed.
    """
    with contextlib.ExitStack() as held:
        for port in sorted({p for p in ports if p}):
            claim = held.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            try:
                claim.bind("\0" + _claim_name(port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    break  # no abstract namespace (not Linux): the port check alone
                raise PortClaimed(port, describe(_socket_owner(_claim_inodes(port)))) from None
        yield
