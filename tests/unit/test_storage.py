"""gateway.common.storage with a local directory root."""

from __future__ import annotations

from pathlib import Path

from gateway.common.storage import LocalStorage, Storage, open_storage


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
