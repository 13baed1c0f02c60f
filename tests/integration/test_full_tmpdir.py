"""`saxgw up` on a TMPDIR with too little room for the stack's private directory (its
rendered Envoy config alone is about 220 KB) says so in one line and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from tests._tmpfs import fill, tmpfs
from tests.integration._up_run import run_up


def test_up_on_a_nearly_full_tmpdir_says_where_room_is_needed(tmp_path: Path) -> None:
    # It ended in a traceback of the write that failed. run_up's TMPDIR is tmp_path / "tmp".
    with tmpfs(tmp_path / "tmp") as tmp:
        fill(tmp, leave=64 << 10)  # room for the directory and its owner file, not the rest
        run = run_up(tmp_path / "sax-root")
        left = sorted(p.name for p in tmp.iterdir())
    assert run.returncode == 1, run.stderr
    [line] = [line for line in run.stderr.splitlines() if line.startswith("saxgw:")]
    assert line.startswith(f"saxgw: no room for the stack's private files in {tmp}/saxgw-")
    assert line.endswith(
        " (No space left on device): free some, or set TMPDIR to a directory with room"
    )
    assert "Traceback" not in run.stderr
    assert left == ["filler"]  # its private directory is removed
