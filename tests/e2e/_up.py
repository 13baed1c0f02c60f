"""`saxgw up` run as a user runs it, in a test: its output line by line, its logs on a miss."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gateway.common.interpreter import module_argv
from gateway.launch.processes import free_port
from tests._stacks import tail_logs


class Up:
    """A running `saxgw up` and the lines it printed so far."""

    def __init__(self, proc: subprocess.Popen[str], log_dir: Path | None) -> None:
        self.proc = proc
        self.log_dir = log_dir
        self.lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        # The end of its output wakes a waiter too: an `up` that printed one line and exited
        # must fail the wait at once, not after its whole timeout.
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def close(self) -> None:
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def wait_for(self, text: str, timeout: float = 50) -> None:
        """Waits for a line with ``text``; a miss shows what `up` printed and the ends of its
        logs. The default stays well inside the test's timeout (120 s), which would otherwise
        end the test first, with neither."""
        with self._changed:
            self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or self._ended, timeout
            )
            if not any(text in line for line in self.lines):
                raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines) + self._logs())

    def _logs(self) -> str:
        if self.log_dir is None or not self.log_dir.is_dir():
            return ""
        return "\n" + tail_logs(self.log_dir, 40)


@contextmanager
def saxgw_up(
    argv: list[str],
    command: str = "up",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Up]:
    """Runs `saxgw COMMAND ARGV` (``env`` on top of ours, in ``cwd``) until the block ends,
    then stops it with SIGTERM. It hears SIGHUP whatever this process does: run under `nohup`,
    which has its children ignore hangups, saxgw keeps ignoring them, as it should."""
    heard = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        proc = subprocess.Popen(
            # As the saxgw script runs: the current directory is not on its sys.path.
            [*module_argv("gateway.cli"), command, *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A strict umask must not make SAX_ROOT unreadable to others. Popen's own umask,
            # not a preexec_fn: that runs Python's fork handlers, and grpc's can hang the fork
            # of a process with grpc threads running (one fresh-clone run stopped here for good).
            umask=0o077,
            env={**os.environ, **(env or {})},
        )
    finally:
        signal.signal(signal.SIGHUP, heard)
    log_dirs = [Path(a.split("=", 1)[1]) for a in argv if a.startswith("--log-dir=")]
    up = Up(proc, log_dirs[0] if log_dirs else None)
    try:
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        up.close()


def own_ports_and_dirs(port: int, tmp_path: Path) -> list[str]:
    """`saxgw up` flags for a stack of its own: free ports, and directories in ``tmp_path``
    (the log directory not there yet: up makes it)."""
    return [
        f"--port={port}",
        f"--envoy-admin-port={free_port()}",
        f"--gateway-ports={free_port()}",
        f"--admin-port={free_port()}",
        f"--model-server-ports={free_port()}",
        f"--sax-root={tmp_path / 'sax-root'}",
        f"--fs-root={tmp_path / 'fs-root'}",
        f"--log-dir={tmp_path / 'logs'}",
    ]
