"""Children start through gateway/launch/diewithparent.py: the kernel kills them when the
process that started them dies (tests/faults/test_supervisor.py kills `saxgw up` with -9 and
finds no process left), and starting one never forks this process with its fork handlers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gateway.launch.processes import ProcessGroup

SHIM = [sys.executable, "-m", "gateway.launch.diewithparent"]


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_the_command_runs_in_the_shims_place_as_our_child(tmp_path: Path) -> None:
    group = ProcessGroup(grace=5)
    out = tmp_path / "out"
    proc = group.start("sleeper", ["sh", "-c", "echo $$ > " + str(out) + "; exec sleep 30"])
    try:
        deadline = time.monotonic() + 30
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        while not out.exists() or cmdline.read_bytes().split(b"\0")[0] != b"sleep":
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        assert int(out.read_text()) == proc.pid  # exec'd in place: the pid we manage
        assert _status(proc.pid, "PPid") == str(os.getpid())
    finally:
        group.stop()
    assert proc.returncode is not None


def test_a_shim_whose_parent_is_already_gone_runs_nothing(tmp_path: Path) -> None:
    # Started by a parent that died before prctl took effect: it would never be killed.
    marker = tmp_path / "ran"
    result = subprocess.run([*SHIM, "1", "touch", str(marker)], timeout=30)
    assert result.returncode == 1
    assert not marker.exists()
