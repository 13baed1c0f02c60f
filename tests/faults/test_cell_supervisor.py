"""`python -m gateway.cell` keeps restarting its servers, through restarts that fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port


def _until(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}:\n{log.read_text()}"
        time.sleep(0.1)


def test_the_cell_restarts_its_admin_after_a_restart_that_failed(tmp_path: Path) -> None:
    # The admin is killed, and its restart fails: SAX_ROOT refuses its location.proto (here
    # a directory stands where the file goes; a read-only or full volume does the same).
    # Before, that failure ended the cell's supervisor with no word: once the storage was
    # mended the admin never came back, nor did a model server that died later, while the
    # cell process ran on, so `saxgw up` saw nothing to restart either.
    root, log = tmp_path / "root", tmp_path / "cell.log"
    admin_port, server_port = free_port(), free_port()
    command = [sys.executable, "-m", "gateway.cell", f"--sax-root={root}", "--log-format=text"]
    command += [f"--admin-port={admin_port}", f"--model-server-ports={server_port}"]
    with log.open("w") as stderr:
        cell = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert cell.stdout is not None
        for line in cell.stdout:
            if line.startswith("model-server "):
                break
        location = root / "sax" / "test" / "location.proto"
        admin = listener_pid(admin_port)
        assert admin is not None
        os.kill(admin, signal.SIGKILL)
        location.unlink()
        location.mkdir()  # before the restart: it waits 0.5 s first
        failed = "restarting the admin server failed: admin#2 exited before it came to listen"
        _until(lambda: failed in log.read_text(), 30, "the failed restart", log)
        location.rmdir()  # mended: the next attempt starts
        _until(lambda: listener_pid(admin_port) is not None, 30, "the admin to come back", log)
        assert location.is_file()

        server = listener_pid(server_port)
        assert server is not None
        os.kill(server, signal.SIGKILL)
        _until(
            lambda: listener_pid(server_port) not in (None, server),
            30,
            "the model server to come back",
            log,
        )
    finally:
        cell.terminate()
        cell.communicate(timeout=30)
