"""A `saxgw up` killed with SIGKILL cannot remove its private temporary directory (its rendered
Envoy config, which may hold API keys, and its metrics files); the next stack to start removes
it, and nothing it cannot prove dead. Before, every such directory stayed in /tmp for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from gateway.launch.stackdir import OWNER_FILE
from tests.faults._saxgw import start_saxgw, stop_saxgw, up_args, wait_healthy


def _stack_dirs(tmp: Path) -> set[Path]:
    return {p for p in tmp.iterdir() if p.name.startswith("saxgw-")}


def _up(base: Path, tmp: Path, started: list[subprocess.Popen[str]]) -> Path:
    """Starts a `saxgw up` with ``tmp`` as its TMPDIR (added to ``started``, for the test to
    stop whatever fails); once healthy, returns the directory it made there."""
    before = _stack_dirs(tmp)
    base.mkdir()
    args, ports = up_args(base)
    started.append(start_saxgw(args, base, env={"TMPDIR": str(tmp)}))
    wait_healthy(started[-1], ports["--port"])
    (made,) = _stack_dirs(tmp) - before
    return made


def _planted(tmp: Path, name: str, record: str | None) -> Path:
    """A directory as a stack makes it, with ``record`` as its owner file (None: none)."""
    path = tmp / name
    path.mkdir(mode=0o700)
    (path / "envoy.yaml").write_text("{}")
    if record is not None:
        (path / OWNER_FILE).write_text(record)
    return path


def test_a_killed_stacks_directory_is_removed_by_the_next(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    started: list[subprocess.Popen[str]] = []
    try:
        killed_dir = _up(tmp_path / "killed", tmp, started)
        live_dir = _up(tmp_path / "live", tmp, started)
        killed = started[0]
        assert killed_dir.exists()  # the second stack left the first's alone while it ran
        assert (killed_dir / "envoy.yaml").exists()
        dead = (killed_dir / OWNER_FILE).read_text()
        assert json.loads(dead)["pid"] == killed.pid
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        # What the next stack must leave alone, whatever their owner: no owner file (an older
        # saxgw's, or one being made), a link (to a dead stack's directory: never followed),
        # and another user's (which only root can make here).
        kept = {_planted(tmp, "saxgw-older", None)}
        target = _planted(tmp_path, "elsewhere", dead)
        link = tmp / "saxgw-link"
        link.symlink_to(target, target_is_directory=True)
        kept.add(link)
        if os.geteuid() == 0:
            others = _planted(tmp, "saxgw-others", dead)
            os.chown(others, 65534, 65534)
            kept.add(others)
        assert killed_dir.exists()
        third_dir = _up(tmp_path / "third", tmp, started)
        assert not killed_dir.exists()
        assert live_dir.exists() and third_dir.exists()
        assert all(os.path.lexists(path) for path in kept) and target.exists()
    finally:
        for saxgw in started:
            stop_saxgw(saxgw)
    # Stopped stacks remove their own, as before.
    assert _stack_dirs(tmp) == kept


pytestmark = pytest.mark.timeout(180)
