"""The admin's model of the cell: published models, joined model servers, and the loop that
keeps them in agreement.

Every publish, update and unpublish is written to state.proto before it is acknowledged, so a
`kill -9` at any moment loses no acknowledged change. The refresh loop polls each model
server's GetStatus, drops servers that stopped answering, and loads or unloads replicas as the
assigner decides; a change (publish, join, ...) runs it at once instead of at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from saxml.protobuf import admin_pb2, common_pb2

from gateway.cell._errors import cell_error, not_found, unavailable
from gateway.cell._files import CellFiles
from gateway.cell.admin.assigner import ModelView, ServerView, assign
from gateway.cell.admin.modelet import ModeletConnection
from gateway.cell.admin.published import Published, definition, needs_reload
from gateway.cell.admin.stored import Stored
from gateway.cell.admin.validation import check_update
from gateway.cell.admin.watchable import WatchResult
from gateway.cell.settings import CellSettings
from gateway.common.closing import completing
from gateway.common.errors import (
    BEING_UNPUBLISHED,
    SAVED_DURING_TAKEOVER,
    SaxError,
    storage_failure,
)
from gateway.common.revision import revision
from gateway.common.storage import StorageError

_log = logging.getLogger("gateway.cell.admin")
_T = TypeVar("_T")

# Statuses with which a re-joining server's model is taken over rather than reloaded.
_ADOPTABLE = frozenset({common_pb2.LOADING, common_pb2.LOADED, common_pb2.FAILED})
#: Seconds until a server whose poll failed is polled again. A dying server may first answer
#: with another UNAVAILABLE text than "refused" (a socket closed mid-call); polling it again
#: soon, not at the next poll_interval tick (10 s), sees the refusal and drops it at once.
_REPOLL_FAILED = 0.5


class Manager:
    def __init__(
        self,
        *,
        settings: CellSettings,
        files: CellFiles,
        fs_root: str,
        serves_cell: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """``serves_cell``: whether location.proto still names this admin, asked before each
        save (an admin that another took the cell over from must not save over its state)."""
        self._settings = settings
        self._files = files
        self._fs_root = fs_root
        self._serves_cell = serves_cell
        self._models: dict[str, Published] = {}
        self._modelets: dict[str, ModeletConnection] = {}
        # Unpublished models whose unloads are not issued yet: their names are not reusable.
        self._unpublishing: set[str] = set()
        self._lock = asyncio.Lock()  # serialises state changes and their saves
        self._methods_changed = False  # a model's method names are not saved yet
        self._saved = b""  # state.proto as this admin last read or wrote it
        self._wrote = False  # whether this admin saved state.proto
        self._kick = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        # What state.proto holds beside the models served, written back by each save.
        self._stored = Stored()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        state, self._saved = await self._files.read_state(self._fs_root)
        wait = self._settings.adopt_wait
        adopt_until = time.monotonic() + (
            self._settings.server_dead_after if wait is None else wait
        )
        url = self._files.state_url(self._fs_root)
        self._stored, served = Stored.read(state, cell=self._settings.cell, url=url)
        for spec in served:
            entry = Published.new(spec, adopt_until=adopt_until, restored=True)
            entry.methods = frozenset(spec.method_names)
            self._models[spec.model_id] = entry
        _log.info("restored %d published models", len(self._models))
        self._loop_task = asyncio.create_task(self._refresh_loop(), name="admin refresh")

    async def stop_refreshing(self) -> None:
        """No poll of the model servers from now on, and so no server dropped: the admin is
        stopping, and so may its cell's model servers be (`EmbeddedCell.close` stops them
        together), whose refused polls would each be logged as a server lost."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    async def close(self) -> None:
        await self.stop_refreshing()
        # Watchers are not released here: an empty address set would tell clients the model
        # has no servers. Stopping the gRPC server fails their calls instead, as upstream's do.
        await asyncio.gather(*(m.close() for m in self._modelets.values()))
        self._modelets.clear()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, model: admin_pb2.Model) -> None:
        async with self._lock:
            if model.model_id in self._models:
                raise cell_error(
                    grpc.StatusCode.ALREADY_EXISTS, f"model {model.model_id} already exists"
                )
            if model.model_id in self._unpublishing:
                raise unavailable(f"model {model.model_id} {BEING_UNPUBLISHED}, please retry later")
            spec = definition(model, uuid=os.urandom(16))

            def publish() -> None:
                self._models[spec.model_id] = Published.new(spec)
                _log.info("published %s (%s)", spec.model_id, spec.model_path)
                self._kick.set()

            await self._commit(
                [*self._specs(), spec], f"could not publish {spec.model_id}", publish
            )

    async def update(self, model: admin_pb2.Model, *, expect: str | None = None) -> None:
        """Replaces the model's definition; with ``expect`` (a `revision`), only if it is
        still the one that the change was made from, else ABORTED."""
        async with self._lock:
            entry = self._get(model.model_id)
            if expect is not None and expect != revision(entry.spec):
                raise cell_error(
                    grpc.StatusCode.ABORTED,
                    f"model {model.model_id} changed since it was read; read it again",
                )
            check_update(entry.spec, model, self._settings.cell)
            spec = definition(model, uuid=entry.spec.uuid, methods=entry.methods)
            reload = needs_reload(entry.spec, spec)

            def update() -> list[Awaitable[None]]:
                entry.spec = spec
                if reload:
                    # A server that re-joins with the model has the old definition, which it
                    # unloads: nothing is left to take over from servers yet to re-join, so
                    # its new replicas are placed now, not once the adopt wait ends.
                    entry.restored = False
                    entry.adopt_until = 0.0
                _log.info("updated %s%s", spec.model_id, " (reloading)" if reload else "")
                self._kick.set()
                return [m.update(spec, reload=reload) for m in self._modelets.values()]

            applied = await self._commit(
                [spec if s.model_id == spec.model_id else s for s in self._specs()],
                f"could not update {spec.model_id}",
                update,
            )
        # Answer once the servers have the new definition, so the next call sees it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.rpc_timeout):  # not wait_for: below
                await asyncio.gather(*applied)

    async def unpublish(self, model_id: str) -> None:
        async with self._lock:
            entry = self._get(model_id)
            unserved = self._stored.without(model_id)

            def unpublish() -> list[Awaitable[None]]:
                self._stored.unserved = unserved
                del self._models[model_id]
                self._unpublishing.add(model_id)
                entry.close()  # its waits and watches end: NOT_FOUND
                _log.info("unpublished %s", model_id)
                self._kick.set()
                # Unload at once rather than at the next refresh, and answer once the servers
                # dropped it: then no gateway's next call finds the model still served.
                wanted = [m for m in self._modelets.values() if model_id in m.wanted]
                return [m.unload(model_id) for m in wanted]

            dropped = await self._commit(
                [s for s in self._specs() if s.model_id != model_id],
                f"could not unpublish {model_id}",
                unpublish,
                unserved=unserved,
            )
        # Not wait_for: in Python 3.11 it can drop a cancellation (the server's stop) that
        # comes as the servers answer.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.rpc_timeout):
                await asyncio.gather(*dropped)

    def _specs(self) -> list[admin_pb2.Model]:
        return [entry.spec for entry in self._models.values()]

    async def _commit(
        self,
        specs: list[admin_pb2.Model],
        failed: str,
        apply: Callable[[], _T],
        *,
        unserved: list[admin_pb2.Model] | None = None,
    ) -> _T:
        """Saves ``specs``, then makes the change in memory (``apply``): a failed write leaves
        both as they were, and a caller cancelled during the write (its deadline passed) finds
        both changed if the write landed, so that memory never falls behind state.proto (an
        admin restarted in between would bring back what memory had dropped). The lock is held
        until both are done: no later change is saved first. What must follow a change that
        landed (its log line, the cycle's kick, the end of an unpublished model's waits) is
        ``apply``'s too: after a cancelled caller's, nothing more of the caller runs."""

        async def commit() -> _T:
            await self._save(specs, failed, unserved=unserved)
            return apply()

        return await completing(commit())

    async def _save(
        self,
        specs: list[admin_pb2.Model],
        failed: str,
        *,
        unserved: list[admin_pb2.Model] | None = None,
    ) -> None:
        """Writes state.proto (``unserved``: its entries not served, if they change). ``failed``
        tells a caller what did not happen."""
        if self._serves_cell is not None and not await self._serves_cell():
            # Another admin took the cell over while this one hung: saving would overwrite
            # what that one saved since, and its callers' changes with it. The caller's
            # retry finds the other one (this one stops).
            raise unavailable(f"{failed}: this admin server no longer serves the cell; retry")
        state = self._stored.state(specs, unserved)
        try:
            self._saved = await self._files.write_state(self._fs_root, state)
            self._wrote = True
        except StorageError as exc:  # the path and cause are logged; the caller gets neither
            storage = f"the storage of cell {self._settings.cell}"
            raise storage_failure(exc, failed, storage, "the admin server's log") from exc
        if self._serves_cell is not None and not await self._serves_cell():
            # It hung mid-save while another admin took over, which may not have read this
            # save and then writes its own state back (`keep_state`): acknowledged, the change
            # could be lost. The retry reaches the other admin, and is made there.
            raise unavailable(f"{failed}: {SAVED_DURING_TAKEOVER}; retry")

    async def keep_state(self) -> bool:
        """Writes this admin's state back over state.proto if it changed outside this admin:
        saved over by one that this admin took the cell over from, which hung mid-save and
        resumed (its late upload lands whole), or a backup put back while the cell ran. Its
        callers were answered before, or are told to retry; this admin's acknowledged changes
        were in memory only, lost at its next restart. The file alone cannot tell the two
        apart, so the WARNING names both, and how to restore a backup. False, writing
        nothing, when this admin started on no state and has saved nothing since: then the
        file is the one to serve, and the admin must restart to read it."""
        async with self._lock:
            try:
                found = await self._files.read_state_bytes(self._fs_root)
            except StorageError:
                return True  # logged by the storage; the next read tries again
            if found == self._saved:
                return True
            if self._serves_cell is not None and not await self._serves_cell():
                return True  # it is this admin that was replaced
            if not self._saved and not self._wrote:
                # This admin has nothing to keep: it started on no state (an fs root mounted
                # after it started; a backup put back), and writing its empty state over the
                # file lost every model in it for good.
                _log.warning(
                    "state.proto of %s holds models this admin server, which started on none "
                    "and saved none, did not read (its fs root was mounted after it started, "
                    "or a backup was put back): it restarts to serve them rather than write "
                    "over them",
                    self._settings.cell,
                )
                return False
            _log.warning(
                "state.proto of %s changed outside this admin server (another admin server "
                "that resumed a save after this one took the cell over, or a copy put back by "
                "hand); writing this admin's state back over it: to restore state.proto from a "
                "backup, stop the cell's admin first (docs/cell.md)",
                self._settings.cell,
            )
            with contextlib.suppress(SaxError):  # the storage logged why; tried again next read
                await self._save(self._specs(), "could not write the state back")
            return True

    def _get(self, model_id: str) -> Published:
        entry = self._models.get(model_id)
        if entry is None:
            raise not_found(f"model {model_id} is not published")
        return entry

    # -- queries ---------------------------------------------------------------------------

    def list_models(self, model_id: str) -> list[admin_pb2.PublishedModel]:
        ids = [model_id] if model_id else sorted(self._models)
        return [self._listed(self._get(mid)) for mid in ids]

    def _listed(self, entry: Published) -> admin_pb2.PublishedModel:
        servers = self._servers_of(entry.spec.model_id)
        self._learn_methods(entry)
        return entry.listed(servers)

    def _learn_methods(self, entry: Published) -> None:
        if entry.learn_methods(self._servers_of(entry.spec.model_id)):
            self._methods_changed = True
            self._kick.set()  # the refresh saves them

    def _servers_of(self, model_id: str) -> list[ModeletConnection]:
        return [m for m in self._modelets.values() if model_id in m.wanted]

    def stats(self, model_id: str) -> admin_pb2.StatsResponse:
        if model_id:
            self._get(model_id)
            servers = self._servers_of(model_id)
        else:
            servers = list(self._modelets.values())
        by_type = Counter((s.spec.chip_type, s.spec.chip_topology) for s in servers)
        by_path = Counter(path for s in servers for path in s.spec.servable_model_paths)
        reply = admin_pb2.StatsResponse(num_servers_by_servable_model_path=dict(by_path))
        for (chip_type, topology), count in sorted(by_type.items()):
            reply.model_server_type_stats.add(
                chip_type=chip_type, chip_topology=topology, num_replicas=count
            )
        return reply

    async def watch(self, model_id: str, *, full: bool, seqno: int) -> WatchResult:
        return await self._get(model_id).watch(full=full, seqno=seqno)

    async def wait_for_ready(self, model_id: str, replicas: int) -> None:
        await self._get(model_id).ready.wait(replicas)

    # -- model servers ---------------------------------------------------------------------

    async def join(self, request: admin_pb2.JoinRequest) -> bool:
        """Takes the model server in, or (known with the same specs) does nothing: a
        heartbeat. Returns whether this Join took it in."""
        existing = self._modelets.get(request.address)
        if existing is not None and existing.same_server(request):
            return False  # a heartbeat
        modelet = ModeletConnection(
            request=request,
            rpc_timeout=self._settings.rpc_timeout,
            on_change=self._views_changed,
            on_disconnect=self._kick.set,
        )
        try:
            # Like upstream, dial back before answering: a server we cannot reach is not joined.
            await modelet.poll()
        except BaseException as exc:
            # Cancelled too (the joiner gave up, its deadline passed, the admin is stopping):
            # the connection is this Join's alone, and left open its channel and tasks ran
            # for the admin's life.
            await modelet.close()
            if not isinstance(exc, grpc.aio.AioRpcError):
                raise
            raise unavailable(
                f"cannot reach model server {request.address} ({exc.code().name}: {exc.details()})"
            ) from exc
        if self._modelets.get(request.address) is not existing:
            await modelet.close()  # another Join from the same server won the race
            return False
        for model_id, seen in modelet.seen.items():
            entry = self._models.get(model_id)
            if entry is not None and seen.status in _ADOPTABLE and _holds(entry, existing):
                modelet.adopt(entry.spec)
            else:
                # No replica of anything published here: it was unpublished, or published
                # again or reloaded, while this admin did not know the server (it had just
                # restarted). Kept, it would answer calls with the old definition for good.
                modelet.evict(model_id)
        self._modelets[request.address] = modelet
        if existing is not None:
            await existing.close()
        _log.info(
            "model server %s joined (%d servable paths, models: %s)",
            request.address,
            len(request.model_server.servable_model_paths),
            sorted(modelet.wanted) or "none",
        )
        self._views_changed()
        self._kick.set()
        return True

    # -- the refresh loop ------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11, wait_for loses a cancellation that
            # arrives as the kick does, and close() would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_interval):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.refresh()
            except Exception:
                _log.exception("refresh failed")

    async def refresh(self) -> None:
        """Polls, prunes, reassigns, wakes up: one cycle of the admin's control loop."""
        modelets = list(self._modelets.values())
        results = await asyncio.gather(*(m.poll() for m in modelets), return_exceptions=True)
        now = time.monotonic()
        for modelet, result in zip(modelets, results, strict=True):
            if isinstance(result, BaseException):
                _log.debug("GetStatus of %s failed: %s", modelet.address, result)
            # A refused connection means nothing listens there any more: no need to wait
            # server_dead_after (upstream's 30 s) before moving its models elsewhere.
            if _refused(result) or now - modelet.last_ping > self._settings.server_dead_after:
                await self._drop(modelet)
            elif isinstance(result, BaseException):
                asyncio.get_running_loop().call_later(_REPOLL_FAILED, self._kick.set)
        async with self._lock:
            self._reassign(now)
        for modelet in self._modelets.values():
            if modelet.dormant:
                modelet.wake_up()
        self._views_changed()
        if self._methods_changed:
            async with self._lock:
                self._methods_changed = False
                try:
                    await self._save(self._specs(), "could not save the models' method names")
                except SaxError as exc:
                    # Still to save, at the next cycle. The storage logged why, once while it
                    # lasts; raised, it was an ERROR with a traceback at every poll.
                    self._methods_changed = True
                    _log.debug("%s", exc)

    async def _drop(self, modelet: ModeletConnection) -> None:
        if self._modelets.get(modelet.address) is modelet:
            del self._modelets[modelet.address]
            _log.warning(
                "model server %s stopped answering; dropped it (it served %s)",
                modelet.address,
                sorted(modelet.wanted) or "nothing",
            )
            await modelet.close()

    def _reassign(self, now: float) -> None:
        servers = [
            ServerView(
                address=m.address,
                servable_paths=frozenset(m.spec.servable_model_paths),
                wanted=frozenset(m.wanted),
                loaded=frozenset(mid for mid in m.wanted if m.serving(mid)),
            )
            for m in self._modelets.values()
        ]
        models = [
            ModelView(
                model_id=model_id,
                model_path=entry.spec.model_path,
                replicas=entry.spec.requested_num_replicas,
                may_add=now >= entry.adopt_until,
            )
            for model_id, entry in self._models.items()
        ]
        plan = assign(servers, models, max_models_per_server=self._settings.max_models_per_server)
        for address, model_id in plan.unloads:
            self._modelets[address].unload(model_id)
        for address, model_id in plan.loads:
            self._modelets[address].load(self._models[model_id].spec)
        self._unpublishing.clear()

    def _views_changed(self) -> None:
        """Brings every model's watched address set, ready count and method names up to
        date."""
        for entry in self._models.values():
            entry.show(self._modelets.values())
            self._learn_methods(entry)


def _holds(entry: Published, existing: ModeletConnection | None) -> bool:
    """Whether a joining server that has ``entry``'s model has its current definition: the
    one this admin gave it (``existing``), else one from before this admin started, which
    only an entry restored from state.proto and not reloaded since can be."""
    given = existing.wanted.get(entry.spec.model_id) if existing is not None else None
    return given == entry.spec if given is not None else entry.restored


def _refused(result: object) -> bool:
    """Whether a GetStatus failure says that nothing listens at the server's address."""
    return (
        isinstance(result, grpc.aio.AioRpcError)
        and result.code() == grpc.StatusCode.UNAVAILABLE
        and "refused" in (result.details() or "").lower()
    )
