"""One thread of a process stopped while the others run: a thread stuck in a busy loop or a
blocked call, as seen from outside (it never comes back to its event loop). SIGSTOP cannot do
it: it stops every thread of the process.

    with stopped_thread(envoy_pid, "wrk:worker_0") as thread:
        ...                 # thread.tid stays stopped; the rest of the process runs
        thread.reaped()     # True once the process died (the thread is reaped)

ptrace(2) does it: PTRACE_SEIZE makes us the thread's tracer, PTRACE_INTERRUPT stops that
thread alone, without a signal (PTRACE_ATTACH would send SIGSTOP). Two things follow from
tracing it. Its tracer must reap it when the process dies: until then the kernel keeps it,
and the process's parent is never told the process exited (so no supervisor restarts it);
`reaped` does that. And every ptrace request must come from the thread that seized it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_PTRACE_DETACH = 17
_PTRACE_SEIZE = 0x4206
_PTRACE_INTERRUPT = 0x4207
_WALL = 0x40000000  # waitpid(2)'s __WALL: a thread (a clone child) is waited for too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(request: int, tid: int) -> None:
    if _libc.ptrace(request, tid, None, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"ptrace({request:#x}, {tid}): {os.strerror(errno)}")


def thread_id(pid: int, name: str) -> int:
    """The id of the thread of ``pid`` named ``name`` (its ``comm``, e.g. ``wrk:worker_0``)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if (task / "comm").read_text().strip() == name:
                return int(task.name)
    raise LookupError(f"process {pid} has no thread named {name}")


@dataclass
class StoppedThread:
    tid: int
    _reaped: bool = False

    def reaped(self) -> bool:
        """Whether the thread is gone (its process died); reaps it if it just did. Never
        waits."""
        if not self._reaped:
            try:
                tid, status = os.waitpid(self.tid, os.WNOHANG | _WALL)
            except ChildProcessError:  # no longer ours to wait for
                self._reaped = True
            else:
                self._reaped = tid != 0 and (os.WIFEXITED(status) or os.WIFSIGNALED(status))
        return self._reaped


@contextlib.contextmanager
def stopped_thread(pid: int, name: str) -> Iterator[StoppedThread]:
    """The thread ``name`` of ``pid`` stopped for the block; afterwards it runs again if its
    process still does, or is reaped if it died, however the block ends."""
    thread = StoppedThread(thread_id(pid, name))
    _ptrace(_PTRACE_SEIZE, thread.tid)
    try:
        _ptrace(_PTRACE_INTERRUPT, thread.tid)
        _, status = os.waitpid(thread.tid, _WALL)  # until it is stopped
        assert os.WIFSTOPPED(status), f"thread {thread.tid}: wait status {status:#x}"
        yield thread
    finally:
        if not thread.reaped():
            with contextlib.suppress(OSError):  # ESRCH: it died just now
                _ptrace(_PTRACE_DETACH, thread.tid)
            thread.reaped()
