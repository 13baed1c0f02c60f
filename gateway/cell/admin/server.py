"""The admin server: creates the cell if needed, serves sax.Admin, publishes its location.

server = AdminServer(settings)
await server.start()          # returns once it serves and location.proto names it
...
await server.stop()
"""

from __future__ import annotations

import asyncio
import logging
import os

import grpc
from saxml.protobuf import admin_pb2_grpc

from gateway.cell import _grpc_server
from gateway.cell._files import CellFiles, parse_location
from gateway.cell.admin.manager import Manager
from gateway.cell.admin.servicer import AdminServicer
from gateway.cell.admin.statelock import hold_state, release
from gateway.cell.admin.takeover import refuse_if_alive
from gateway.cell.settings import CellSettings
from gateway.common.names import parse_cell_id
from gateway.common.rpc import add_servicer
from gateway.common.storage import StorageError, absolute_root

_log = logging.getLogger("gateway.cell.admin")
# How long a save waits to learn whether this admin still serves the cell (`_before_save`):
# storage that does not answer would hold each change its whole retry budget (10 s) before
# the save even began, and so let a change its caller gave up on land that much later.
_SAVE_CHECK_S = 0.5


class AdminServer:
    def __init__(self, settings: CellSettings) -> None:
        parse_cell_id(settings.cell)
        self._settings = settings
        self._files = CellFiles(settings)
        self._server: grpc.aio.Server | None = None
        self._manager: Manager | None = None
        self.address = ""
        #: Differs per incarnation, so WatchLoc callers notice a restart.
        self.server_id = ""
        #: Set once location.proto names another admin: this one was superseded.
        self.superseded = asyncio.Event()
        #: Set once state.proto holds what this admin, which started on no state and saved
        #: none, should serve (`Manager.keep_state`): it stops, to be restarted and read it.
        self.reread = asyncio.Event()
        self._guard: asyncio.Task[None] | None = None
        self._announced = False  # location.proto names this admin (it wrote it)
        self._unnamed = False  # location.proto names no admin, as last read
        self._was_empty = False  # location.proto was an empty file at the last read
        self._state_lock: int | None = None  # its hold on the state in a local fs root

    @property
    def manager(self) -> Manager:
        if self._manager is None:
            raise RuntimeError("the admin server is not started")
        return self._manager

    async def start(self) -> None:
        config = await self._files.ensure_cell()  # one with an fs_root
        asked = self._settings.fs_root
        if asked and absolute_root(asked).rstrip("/") != absolute_root(config.fs_root).rstrip("/"):
            _log.warning(
                "--fs-root %s is not used: the cell %s keeps its state under %s, as its "
                "config.proto says (a cell's fs root cannot change)",
                asked,
                self._settings.cell,
                config.fs_root,
            )
        server = _grpc_server.new_server(_grpc_server.ADMIN_STOPPING)
        port = _grpc_server.bind(server, self._settings.host, self._settings.admin_port)
        self.address = _grpc_server.address(self._settings.host, port)
        try:
            await refuse_if_alive(self._files, cell=self._settings.cell, mine=self.address)
            self._state_lock = await hold_state(
                config.fs_root,
                cell=self._settings.cell,
                mine=self.address,
                sax_root=self._settings.sax_root,
            )
            # Named before the state is read: an admin this one replaces (hung, then resumed)
            # checks location.proto after each save, so any save it acknowledges landed
            # before this read. Named after it, a save landing in between was acknowledged
            # there and never known here (`Manager.keep_state` then wrote over it).
            await self._files.write_location(self.address)
            self._announced = True
            self.server_id = f"{self.address}_{os.urandom(8).hex()}"
            self._manager = Manager(
                settings=self._settings,
                files=self._files,
                fs_root=config.fs_root,
                serves_cell=self._before_save,
            )
            await self._manager.start()
            add_servicer(
                server,
                admin_pb2_grpc.add_AdminServicer_to_server,
                AdminServicer(
                    manager=self._manager, cell=self._settings.cell, server_id=self.server_id
                ),
            )
            await server.start()
        except BaseException:
            # Bound, maybe started (a corrupt state.proto, SAX_ROOT refusing location.proto):
            # free the port (a location.proto naming it is as stale as a dead admin's). A
            # started server left to the garbage collector printed a traceback ("Event loop
            # is closed") after the process's one line.
            await server.stop(0)
            release(self._state_lock)
            self._state_lock = None
            raise
        self._server = server
        _log.info(
            "admin server for %s listening on %s (fs_root %s)",
            self._settings.cell,
            self.address,
            config.fs_root,
        )
        self._guard = asyncio.create_task(self._watch_location(), name="admin location")

    async def _watch_location(self) -> None:
        """Sets ``superseded`` once location.proto names another admin (`_serves_cell`),
        read every ``location_watch_interval``; until then, keeps state.proto this admin's
        (`Manager.keep_state`)."""
        while await self._serves_cell():
            if self._unnamed:
                await self._name_this_admin_again()
            if not await self.manager.keep_state():
                self.reread.set()
                return
            await asyncio.sleep(self._settings.location_watch_interval)

    async def _name_this_admin_again(self) -> None:
        """Writes location.proto again, which is gone or stays empty (deleted or emptied
        outside this admin: a cleanup of SAX_ROOT, a restore without it). Left so, every
        client that looked for the admin since (a gateway restarted, saxutil) found none,
        UNAVAILABLE for as long as this admin served. Only while the cell's config.proto is
        there: with it gone too, the whole SAX_ROOT is (moved away, a volume unmounted), and
        a write would make a new one under the mount point. A file that does not parse is
        left alone: upstream's admin writes it in place, so that is another admin's takeover
        half written, which this one must not overwrite."""
        try:
            if not await self._files.config_present():
                return
            await self._files.write_location(self.address)
        except StorageError:
            return  # logged by the storage; tried again at the next read
        self._unnamed = False
        _log.warning(
            "location.proto of %s was gone or empty (removed or emptied outside this admin "
            "server); named this one, %s, again",
            self._settings.cell,
            self.address,
        )

    async def _before_save(self) -> bool:
        """`_serves_cell`, asked before a save: unknown within ``_SAVE_CHECK_S`` (storage
        slow or down, which the save will meet too), it serves."""
        try:
            async with asyncio.timeout(_SAVE_CHECK_S):
                return await self._serves_cell()
        except TimeoutError:
            return True

    async def _serves_cell(self) -> bool:
        """False, with ``superseded`` set, once location.proto names another admin: one
        started while this one hung (a stopped process, a partitioned host) took the cell
        over. Serving on, this one would act on what it knew before (its state, its model
        servers' loads), and once the other one died, location.proto would name a dead admin
        for good while this one, alive, was never restarted. Asked before each save too."""
        if self.superseded.is_set():
            return False
        if not self._announced:
            return True  # location.proto names the admin this one replaces, until it starts
        try:
            raw = await self._files.read_location_bytes()
            named = parse_location(raw)
        except StorageError:
            return True  # logged by the storage; says nothing about who serves the cell
        except Exception:  # a bug: say so, and keep serving rather than end unheard
            _log.exception("reading location.proto of %s failed", self._settings.cell)
            return True
        # Empty at two reads in a row is no takeover half written (an instant's state), but a
        # file emptied outside the admin (a truncation, a restore of a bad copy): readers take
        # it for "no admin yet", so restarted model servers never joined this one again.
        empty = raw == b""
        self._unnamed = raw is None or (empty and self._was_empty)
        self._was_empty = empty
        if named is None or named == self.address:
            return True
        _log.warning(
            "location.proto of %s names another admin server, %s: it took the cell over "
            "(this one hung, or was cut off); this one stops",
            self._settings.cell,
            named,
        )
        self.superseded.set()
        return False

    async def stop(self, grace: float = _grpc_server.STOP_GRACE) -> None:
        if self._manager is not None:
            # Before the calls in flight drain: the model servers may be stopping too.
            await self._manager.stop_refreshing()
        if self._guard is not None:
            self._guard.cancel()
            await asyncio.gather(self._guard, return_exceptions=True)
            self._guard = None
        if self._server is not None:
            await _grpc_server.stop(self._server, grace)
            self._server = None
        if self._manager is not None:
            await self._manager.close()
        release(self._state_lock)
        self._state_lock = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
