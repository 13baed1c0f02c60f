"""gateway.common.storage with a local directory root; its real file-system failures become
one logged StorageError that says whether a retry may pass."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from gateway.common.failurelog import REPEAT_S, FailureLog
from gateway.common.storage import LocalStorage, Storage, StorageError, open_storage
from tests._storage import frozen


def test_open_storage_local(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)


def test_join_ignores_empty_parts_and_slashes() -> None:
    assert Storage.join("sax", "", "/test/", "location.proto") == "sax/test/location.proto"
    assert Storage.join("", "") == ""


async def test_write_then_read_round_trips(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    await storage.write("sax/test/location.proto", b"\x0a\x03abc")
    assert await storage.read("sax/test/location.proto") == b"\x0a\x03abc"
    assert (tmp_path / "sax" / "test" / "location.proto").read_bytes() == b"\x0a\x03abc"


async def test_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    await storage.write("a/f", b"old")
    await storage.write("a/f", b"new")
    assert await storage.read("a/f") == b"new"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f"]


def test_a_write_is_on_disk_before_it_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file's bytes, then the directory that names it (the rename): without either, a
    # power loss could bring the cell's state back empty or old, after its publish was
    # acknowledged. What each fsync was of, read from its descriptor.
    synced: list[Path] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    open_storage(str(tmp_path)).write_sync("a/f", b"new")
    [written, directory] = synced
    assert written.parent == tmp_path / "a" and written.name.startswith(".f.")  # the temp file
    assert directory == tmp_path / "a"


def test_a_write_that_fails_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError):
        open_storage(str(tmp_path)).write_sync("a/f", b"new")
    assert list((tmp_path / "a").iterdir()) == []


async def test_read_missing_is_none(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    assert await storage.read("sax/nope/location.proto") is None
    assert await storage.read("") is None  # a directory, not a file


async def test_list_dirs_lists_only_directories_sorted(tmp_path: Path) -> None:
    for cell in ("zeta", "alpha", "mid"):
        (tmp_path / "sax" / cell).mkdir(parents=True)
    (tmp_path / "sax" / "file.txt").write_bytes(b"")
    storage = open_storage(str(tmp_path))
    assert await storage.list_dirs("sax") == ["alpha", "mid", "zeta"]
    assert await storage.list_dirs("missing") == []


async def test_exists_for_files_and_non_empty_dirs(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    await storage.write("sax/test/config.proto", b"")
    (tmp_path / "empty").mkdir()
    assert await storage.exists("sax/test/config.proto")
    assert await storage.exists("sax/test")
    assert not await storage.exists("sax/other")
    assert not await storage.exists("empty")


def test_sync_methods_work_without_a_loop(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    storage.write_sync("x/y", b"1")
    assert storage.read_sync("x/y") == b"1"
    assert storage.list_dirs_sync("") == ["x"]
    assert storage.url("x/y") == f"{tmp_path}/x/y"


async def test_a_file_system_that_refuses_is_a_logged_storage_error_that_no_retry_mends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A bare OSError reached the callers, each mapping (or not) its own way.
    storage = LocalStorage(str(tmp_path))
    (tmp_path / "sax").write_bytes(b"")  # a file where a directory is expected
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(StorageError) as written:
        await storage.write("sax/test/state.proto", b"state")
    with pytest.raises(StorageError) as read:
        await storage.read("loop")
    with pytest.raises(StorageError) as listed:
        await storage.list_dirs("loop")
    for failure in (written, read, listed):
        assert failure.value.transient is False
    expected = [
        f"writing {tmp_path}/sax/test/state.proto failed: [Errno 20] Not a directory: "
        f"'{tmp_path}/sax/test'",
        f"reading {loop} failed: [Errno 40] Too many levels of symbolic links: '{loop}'",
        f"listing {loop} failed: [Errno 40] Too many levels of symbolic links: '{loop}'",
    ]
    assert [str(f.value) for f in (written, read, listed)] == expected
    # Logged where it happened, once each: callers tell their own callers less.
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", message) for message in expected
    ]
    assert (tmp_path / "sax").read_bytes() == b""


def test_a_failure_that_goes_on_is_logged_when_it_starts_once_a_minute_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each failure was a WARNING: during an outage, every gateway's health probe alone logged
    # one every 5 s for as long as it lasted.
    clock = [1000.0]
    log = logging.getLogger("test.failurelog")
    caplog.set_level(logging.DEBUG, logger=log.name)
    failures = FailureLog(log, clock=lambda: clock[0])
    key, failed = ("listing", "gs://b/sax"), "listing gs://b/sax failed: unreachable"
    for seconds in (0.0, 5.0, 5.0, REPEAT_S):
        clock[0] += seconds
        failures.failed(key, failed)
    failures.failed(key, "listing gs://b/sax failed: Forbidden (403)")  # a new cause: at once
    failures.succeeded(("reading", "gs://b/sax"), "reading gs://b/sax")  # not the one failing
    failures.succeeded(key, "listing gs://b/sax")
    failures.succeeded(key, "listing gs://b/sax")  # it had ended already
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", failed),
        ("DEBUG", f"{failed} (again)"),
        ("DEBUG", f"{failed} (again)"),
        ("WARNING", f"{failed} (2 more times in the last 60 s)"),
        ("WARNING", "listing gs://b/sax failed: Forbidden (403)"),
        ("INFO", "listing gs://b/sax works again, after 5 failures"),
    ]


def test_two_causes_taking_turns_are_logged_once_each_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An unreachable admin fails reads as "failed to connect" and as "unreachable" in turn:
    # each change of cause was a WARNING, 219 of them for 3,000 calls in one outage.
    clock = [1000.0]
    log = logging.getLogger("test.failurelog.turns")
    caplog.set_level(logging.WARNING, logger=log.name)
    failures = FailureLog(log, clock=lambda: clock[0])
    key, first, second = ("reading", "acls"), "failed: connect", "failed: unreachable"
    for _ in range(50):
        clock[0] += 0.5
        failures.failed(key, first)
        failures.failed(key, second)
    clock[0] += REPEAT_S
    failures.failed(key, second)
    assert [r.getMessage() for r in caplog.records] == [
        first,
        second,
        f"{second} (98 more times in the last 60 s)",
    ]


async def test_storage_logs_a_failure_once_while_it_goes_on_and_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.common.storage")
    storage = LocalStorage(str(tmp_path))
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for _ in range(3):
        with pytest.raises(StorageError):
            await storage.read("loop")
    loop.unlink()
    loop.write_bytes(b"x")
    assert await storage.read("loop") == b"x"
    failed = f"reading {loop} failed: [Errno 40] Too many levels of symbolic links: '{loop}'"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", failed),
        ("INFO", f"reading {loop} works again, after 3 failures"),
    ]


async def test_a_directory_that_refuses_new_files_is_logged_once_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A read-only (or full of inodes, or immutable) directory refused each write's temp file,
    # and the message quoted that file's random name: each failure was a new cause, so a
    # WARNING per publish for as long as the disk refused.
    caplog.set_level(logging.INFO, logger="gateway.common.storage")
    storage = LocalStorage(str(tmp_path))
    await storage.write("sax/test/state.proto", b"old")
    directory = tmp_path / "sax" / "test"
    failures = []
    with frozen(directory):
        for _ in range(3):
            with pytest.raises(StorageError) as failed:
                await storage.write("sax/test/state.proto", b"new")
            failures.append(str(failed.value))
    await storage.write("sax/test/state.proto", b"new")
    assert failures[0] == failures[1] == failures[2], failures
    assert failures[0].startswith(f"writing {directory}/state.proto failed: [Errno ")
    assert failures[0].endswith(f": '{directory}'"), failures[0]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", failures[0]),
        ("INFO", f"writing {directory}/state.proto works again, after 3 failures"),
    ]
    assert sorted(p.name for p in directory.iterdir()) == ["state.proto"]


def test_failures_remembered_are_bounded_the_oldest_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: every key that ever failed stayed (a replica's failures are keyed by its
    # address, and a cell's model servers come back on new ports): memory grew for ever.
    log = logging.getLogger("test.failurelog.bound")
    caplog.set_level(logging.WARNING, logger=log.name)
    failures = FailureLog(log)
    for n in range(5000):
        failures.failed(("model server", f"10.0.0.1:{n}"), f"replica {n} failed")
    assert failures.failing(("model server", "10.0.0.1:4999"))
    assert not failures.failing(("model server", "10.0.0.1:0"))
    remembered = [n for n in range(5000) if failures.failing(("model server", f"10.0.0.1:{n}"))]
    assert remembered == list(range(5000 - 1024, 5000))
    caplog.clear()
    failures.failed(("model server", "10.0.0.1:0"), "replica 0 failed")  # forgotten: new again
    failures.failed(("model server", "10.0.0.1:4999"), "replica 4999 failed")  # repeats: quiet
    assert [r.getMessage() for r in caplog.records] == ["replica 0 failed"]
