"""Which stack directories a starting stack removes: only those whose owner is proven gone
(tests/faults/test_stale_dirs.py does it with a real `saxgw up` killed by SIGKILL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.launch.stackdir import OWNER_FILE, owner, remove_stale


def _dir(root: Path, name: str, record: dict[str, Any] | None) -> Path:
    path = root / f"saxgw-{name}"
    path.mkdir()
    if record is not None:
        (path / OWNER_FILE).write_text(json.dumps(record))
    return path


def test_only_directories_of_owners_proven_gone_are_removed(tmp_path: Path) -> None:
    me = owner()
    assert me["start_time"] is not None and me["pid_namespace"] and me["boot_id"]
    live = _dir(tmp_path, "live", me)
    reused = _dir(tmp_path, "reused", {**me, "start_time": me["start_time"] - 1})
    rebooted = _dir(tmp_path, "rebooted", {**me, "boot_id": "another boot"})
    elsewhere = _dir(tmp_path, "elsewhere", {**me, "pid": 1, "pid_namespace": "pid:[1]"})
    unreadable = _dir(tmp_path, "unreadable", None)
    (unreadable / OWNER_FILE).write_text('{"pid": 1')  # cut short
    not_ours = tmp_path / "other-tool-dir"
    not_ours.mkdir()
    (not_ours / OWNER_FILE).write_text(json.dumps({**me, "boot_id": "another boot"}))
    assert sorted(remove_stale(tmp_path)) == [rebooted, reused]
    assert live.exists() and elsewhere.exists() and unreadable.exists() and not_ours.exists()


def test_a_missing_root_is_no_error(tmp_path: Path) -> None:
    assert remove_stale(tmp_path / "gone") == []
