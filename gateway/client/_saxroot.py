"""SAX_ROOT as the Sax client uses it: the cells, and each cell's location.proto and config.proto.

Upstream Sax keeps a cell's public state in files under SAX_ROOT; a client finds its way by them::

    <sax_root>/sax/<cell>/location.proto  sax.Location: the address of the cell's admin server
    <sax_root>/sax/<cell>/config.proto    sax.Config: the cell's admin ACL (and its fs root)

This module owns that storage: reading the files (and writing config.proto, which holds a
cell's ACL), listing the cells, and what a caller learns when SAX_ROOT fails
(`sax_root_failure`: the failure in the caller's terms, while the path or URL goes to the log).
Calling the admin, and retrying while it is away, is `gateway.client._admin`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from saxml.protobuf import admin_pb2

from gateway import naming
from gateway.common.deadline import Deadline
from gateway.common.errors import (
    InternalError,
    NotFoundError,
    SaxError,
    UnavailableError,
    storage_failure,
)
from gateway.common.failurelog import FailureLog
from gateway.common.limits import quote
from gateway.common.storage import Storage, StorageError

_log = logging.getLogger(__name__)
# "No Sax cell under SAX_ROOT": every call retries its lookup for seconds, and every call
# and health probe meets it; logged when it starts, then once a minute while it lasts.
_NO_ROOT = FailureLog(_log, level=logging.INFO)
# "location.proto is not a sax.Location": every attempt of every admin call reads it again
# while it lasts (hundreds of lines a minute); logged when it starts, then once a minute.
_BAD_LOCATION = FailureLog(_log)
# "A call named a cell that does not exist": any caller can send one per request, under names
# of its choosing (each call's lookup and its ACL read logged one each: two INFO lines per
# request). Logged when it starts, then once a minute with how many; each at DEBUG.
_NO_CELL = FailureLog(_log, level=logging.INFO)

LOCATION_FILE = "location.proto"
CONFIG_FILE = "config.proto"
#: A partial write of config.proto this old is none in flight (a write takes milliseconds).
_PARTIAL_WRITE_AGE_S = 60.0
# What Sax writes into location.proto when it creates a cell, before any admin has run.
_NO_ADMIN_YET = "No admin server has been started for this Sax cell."


def sax_root_failure(exc: StorageError, failed: str) -> SaxError:
    """What a caller learns when SAX_ROOT failed: ``failed`` says what did not happen."""
    return storage_failure(exc, failed, "this gateway's SAX_ROOT", "the gateway's log")


async def list_cells(storage: Storage, deadline: Deadline | None = None) -> list[str]:
    """Cell IDs under SAX_ROOT (``["/sax/test", ...]``), sorted. A listing that has not
    answered by ``deadline`` is SAX_ROOT's failure (UNAVAILABLE), as one that fails is: a
    short deadline ran out in it and the caller was told only "Deadline Exceeded"."""
    try:
        async with asyncio.timeout(None if deadline is None else deadline.remaining()):
            names = await storage.list_dirs(naming.PREFIX)
    except TimeoutError:
        late = StorageError(f"{storage.url(naming.PREFIX)} was not listed in time", transient=True)
        raise sax_root_failure(late, "could not list the cells") from None
    except StorageError as exc:  # a bucket missing or unreachable, a local root unreadable
        raise sax_root_failure(exc, "could not list the cells") from exc
    return [naming.CellId(n).id for n in names if naming.is_valid_name(n)]


class CellDir:
    """One cell's directory under SAX_ROOT, as a client reads it."""

    def __init__(self, cell: naming.CellId, storage: Storage) -> None:
        self.cell = cell
        self._storage = storage

    @property
    def cell_dir(self) -> str:
        """``sax/<cell>``, relative to SAX_ROOT."""
        return self._storage.join("sax", self.cell.name)

    async def read_location(self) -> str:
        """The admin address in ``location.proto``; NotFoundError if the cell does not exist,
        UnavailableError if no admin has written its address yet."""
        path = self._storage.join(self.cell_dir, LOCATION_FILE)
        try:
            data = await self._storage.read(path)
            if data is None and not await self._storage.exists(self.cell_dir):
                if not await self._storage.exists(naming.PREFIX):
                    raise self._no_root()
                raise self._no_cell(self.cell_dir)
        except StorageError as exc:  # e.g. GCS unreachable: logged with its URL
            raise self._storage_failure(exc, "could not find the admin server") from exc
        self._root_found()
        if data is None:
            raise UnavailableError(f"no admin server location for {self.cell} yet")
        url = self._storage.url(path)
        try:
            address: str = admin_pb2.Location.FromString(data).location
        except DecodeError as exc:
            # Upstream's admin writes the file in place: it may be cut short while an admin
            # starts. Retried as an admin that is not there yet; for good, the operator's.
            _BAD_LOCATION.failed(("parsing", url), f"{url} is not a sax.Location")
            raise UnavailableError(
                "its location.proto does not parse (being rewritten, or corrupt: restarting "
                "the cell's admin server writes it anew)"
            ) from exc
        if not address or address == _NO_ADMIN_YET:
            _BAD_LOCATION.succeeded(("parsing", url), f"parsing {url}")
            raise UnavailableError(f"no admin server has started for {self.cell} yet")
        if not naming.is_server_address(address):
            # grpc would dial it all the same (`is_server_address`): another port, a socket.
            _BAD_LOCATION.failed(("parsing", url), f"{url} names {quote(address)}, not HOST:PORT")
            raise UnavailableError(
                f"its location.proto names {quote(address)} for its admin server, not HOST:PORT"
            )
        _BAD_LOCATION.succeeded(("parsing", url), f"parsing {url}")
        return address

    def _no_cell(self, path: str) -> NotFoundError:
        # The message reaches clients: where SAX_ROOT is on this server is the operator's.
        _log.debug("cell %s not found: no %s", self.cell, self._storage.url(path))
        where = self._storage.url(naming.PREFIX)
        _NO_CELL.failed(
            ("finding the cells calls name under", where),
            f"calls name cells that do not exist under SAX_ROOT {where} (each one at DEBUG)",
        )
        return NotFoundError(f"cell {self.cell} not found")

    def _no_root(self) -> UnavailableError:
        # No cell at all: SAX_ROOT is missing or empty (a volume not mounted yet, a wrong
        # --sax-root), which is the operator's to fix, not the caller's cell name; and it may
        # come back, so UNAVAILABLE rather than NOT_FOUND. The path stays in the log.
        where = self._storage.url(naming.PREFIX)
        _NO_ROOT.failed(("finding a Sax cell under", where), f"no Sax cell under SAX_ROOT {where}")
        return UnavailableError(
            f"no Sax cell exists under this gateway's SAX_ROOT (looking for {self.cell}): "
            "it is missing or empty; its operator should check its --sax-root"
        )

    def _root_found(self) -> None:
        """Ends a "no Sax cell under SAX_ROOT" (`_no_root`), if one was going on."""
        where = self._storage.url(naming.PREFIX)
        _NO_ROOT.succeeded(("finding a Sax cell under", where), f"finding a Sax cell under {where}")

    async def read_config(self) -> admin_pb2.Config:
        """The cell's ``config.proto``."""
        path = self._storage.join(self.cell_dir, CONFIG_FILE)
        try:
            data = await self._storage.read(path)
        except StorageError as exc:
            raise self._storage_failure(exc, "could not read the config") from exc
        if data is None:
            raise self._no_cell(path)
        try:
            config: admin_pb2.Config = admin_pb2.Config.FromString(data)
        except DecodeError as exc:
            # The operator's to restore, not the caller's to mend: INTERNAL, not a 400.
            _log.error("%s is not a sax.Config: %s", self._storage.url(path), exc)
            raise InternalError(
                f"the config of cell {self.cell} is corrupt; its operator must restore it"
            ) from exc
        return config

    async def write_config(self, config: admin_pb2.Config) -> None:
        path = self._storage.join(self.cell_dir, CONFIG_FILE)
        try:
            # What writes a kill cut short left (each gateway process writes the file): they
            # piled up in SAX_ROOT, which upstream's tools and other cells share. Its failure
            # (logged) is no reason to leave the config unsaved.
            with contextlib.suppress(StorageError):
                await self._storage.discard_partial_writes(path, older_than=_PARTIAL_WRITE_AGE_S)
            await self._storage.write(path, config.SerializeToString())
        except StorageError as exc:  # an atomic write: the config stays as it was
            raise self._storage_failure(exc, "could not save the config") from exc

    def unanswered(self) -> SaxError:
        """What a caller learns when its deadline passed while it waited for this cell's
        location.proto: SAX_ROOT did not answer in time (the read logs how it ends)."""
        late = StorageError(f"the location of {self.cell} was not read in time", transient=True)
        return self._storage_failure(late, "could not find the admin server")

    def _storage_failure(self, exc: StorageError, failed: str) -> SaxError:
        """``failed`` ("could not read the config") of this cell, for a caller."""
        return sax_root_failure(exc, f"{failed} of cell {self.cell}")
