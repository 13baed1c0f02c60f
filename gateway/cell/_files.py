"""The files a cell lives by, laid out like upstream Sax:

<sax_root>/sax/<cell>/config.proto    sax.Config, written when the cell is created
<sax_root>/sax/<cell>/location.proto  sax.Location, "ip:port" of the running admin
<fs_root>/sax/<cell>/state.proto      sax.State, the published models
"""

from __future__ import annotations

import contextlib
import logging
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from saxml.protobuf import admin_pb2

from gateway.cell._errors import CellStartError
from gateway.cell.settings import CellSettings
from gateway.common.storage import Storage, StorageError, absolute_root, open_storage

CONFIG_FILE = "config.proto"
LOCATION_FILE = "location.proto"
STATE_FILE = "state.proto"

_M = TypeVar("_M", bound=Message)
_log = logging.getLogger("gateway.cell.admin")


class CorruptCellFileError(CellStartError):
    """config.proto or state.proto does not parse: the admin must not start over it (it would
    serve, then save, an empty cell). The message says which file and what to do."""


def _parse(message: type[_M], data: bytes, url: str, what: str) -> _M:
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise _corrupt(message, url, f"is corrupt ({exc})", what) from None


def _corrupt(message: type[Message], url: str, fault: str, what: str) -> CorruptCellFileError:
    fresh = "no published models" if message is admin_pb2.State else "a new cell"
    return CorruptCellFileError(
        f"{url} {fault}; it holds {what}: restore it from a backup, or move it away to start "
        f"with {fresh}"
    )


class CellFiles:
    """Async access to one cell's files under SAX_ROOT and under its fs root."""

    def __init__(self, settings: CellSettings) -> None:
        self._settings = settings
        self._root: Storage = open_storage(settings.sax_root, gcs_endpoint=settings.gcs_endpoint)
        self._fs_root: Storage | None = None
        self.cell_dir = Storage.join(settings.cell)  # "/sax/test" -> "sax/test"

    async def ensure_cell(self) -> admin_pb2.Config:
        """Returns the cell's config, creating the cell (config.proto) when absent. The cell's
        directory is made as upstream's tools make it, for a cell an earlier version made too:
        on GCS, upstream's saxutil, model servers and admin find no cell without its marker."""
        try:
            await self._root.make_dir(self.cell_dir)
            marked = True
        except StorageError:  # logged where it failed; the cell serves all the same
            marked = False
        config = await self._read_or_make_config()  # a fault of the whole storage raises here
        if not marked:  # only now: said before a start the same fault failed, a false lead
            _log.warning(
                "the cell's directory %s is not marked as upstream Sax marks one: its saxutil "
                "and servers will not find the cell until it is (the admin makes it at start)",
                self._root.url(self.cell_dir),
            )
        return config

    async def _read_or_make_config(self) -> admin_pb2.Config:
        path = Storage.join(self.cell_dir, CONFIG_FILE)
        data = await self._root.read(path)
        if data is not None:
            url, what = self._root.url(path), "the cell's fs_root"
            found = _parse(admin_pb2.Config, data, url, what)
            if not found.fs_root:  # a zero-length file, say: it parses, as a Config of nothing
                raise _corrupt(admin_pb2.Config, url, "names no fs_root", what)
            return found
        # Absolute: `saxgw up` makes its default cell with .saxgw/fs-root, and the same cell
        # started from another directory read and saved its state in another place.
        config = admin_pb2.Config(fs_root=absolute_root(self._settings.effective_fs_root))
        await self._root.write(path, config.SerializeToString())
        return config

    async def config_present(self) -> bool:
        """Whether the cell's config.proto is there: it is made with the cell, and only an
        operator removes it."""
        return await self._root.read(Storage.join(self.cell_dir, CONFIG_FILE)) is not None

    async def read_location_bytes(self) -> bytes | None:
        return await self._root.read(Storage.join(self.cell_dir, LOCATION_FILE))

    async def write_location(self, address: str) -> None:
        """Names ``address`` in location.proto, unless it already does (an admin restarted on
        its port): written anyway, a SAX_ROOT that was full or refused writes kept the
        restarted admin from starting, and its cell from every change and listing, until the
        operator made room, though nothing needed writing."""
        path = Storage.join(self.cell_dir, LOCATION_FILE)
        data = admin_pb2.Location(location=address).SerializeToString()
        if await self._root.read(path) != data:
            await self._root.write(path, data)

    def _state(self, fs_root: str) -> Storage:
        if self._fs_root is None or self._fs_root.root != fs_root:
            self._fs_root = open_storage(fs_root, gcs_endpoint=self._settings.gcs_endpoint)
        return self._fs_root

    async def read_state(self, fs_root: str) -> tuple[admin_pb2.State, bytes]:
        """The saved state and its bytes, read when the admin starts: then no save of it is in
        flight, and what a killed admin's last save left half-written is removed."""
        storage, path = self._state(fs_root), Storage.join(self.cell_dir, STATE_FILE)
        # Logged by the storage if it fails. A leftover harms nothing (no save reads or
        # reuses it) and goes at a later start; raised, an fs root turned read-only after a
        # kill kept the admin from starting, and the cell from every listing, for good.
        with contextlib.suppress(StorageError):
            await storage.discard_partial_writes(path)
        # Strict: read as absent, a state something is in the way of was an empty one,
        # which the admin served (its servers unloaded every model) and, once the way was
        # clear, wrote over the file.
        data = await storage.read(path, strict=True) or b""
        if not data:
            return admin_pb2.State(), data
        state = _parse(admin_pb2.State, data, storage.url(path), "every published model")
        return state, data

    def state_url(self, fs_root: str) -> str:
        """Where state.proto is, for messages."""
        return self._state(fs_root).url(Storage.join(self.cell_dir, STATE_FILE))

    async def read_state_bytes(self, fs_root: str) -> bytes:
        """state.proto as it is now (b"" when there is none), unparsed."""
        path = Storage.join(self.cell_dir, STATE_FILE)
        return await self._state(fs_root).read(path) or b""

    async def write_state(self, fs_root: str, state: admin_pb2.State) -> bytes:
        """Saves ``state``; returns the bytes written."""
        path, data = Storage.join(self.cell_dir, STATE_FILE), state.SerializeToString()
        await self._state(fs_root).write(path, data)
        return data


def parse_location(data: bytes | None) -> str | None:
    """The admin address in location.proto contents, or None when there is none yet."""
    if not data:
        return None
    try:
        address: str = admin_pb2.Location.FromString(data).location
    except DecodeError:  # a foreign file means "no admin yet", as an empty one does
        return None
    return address or None
