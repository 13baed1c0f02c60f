"""Runs a command that the kernel kills when the process that started it dies:

    python -m gateway.launch.diewithparent PARENT_PID COMMAND [ARG...]

It asks for SIGKILL on its parent's death (``PR_SET_PDEATHSIG``, which survives exec), makes
sure that parent is still the one it was started by, and execs COMMAND in its own place (same
pid). `ProcessGroup` starts every child through it, so children die with ``saxgw`` however
``saxgw`` ends, even by SIGKILL.

Why a separate exec and not a ``preexec_fn``: a ``preexec_fn`` makes subprocess fork() the
whole process and run its fork handlers, and grpc's handler waits on grpc's threads; in a
process with grpc calls in flight it waited for good (a test session hung in `Popen`).
Without one, subprocess uses vfork(), which runs no handlers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl: then nobody would kill us later.
    if os.getppid() != parent:
        os._exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
