"""The admin's connection to one joined model server.

It remembers which models the admin wants on the server ("wanted") and what the server last
reported ("seen"), and runs Load / Unload / UpdateLoaded / WakeUp one at a time in order, like
upstream's per-server action queue, so a load and a later unload of one model cannot cross.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypedDict

import grpc
from saxml.protobuf import admin_pb2, common_pb2, modelet_pb2, modelet_pb2_grpc

from gateway.common.errors import go_code_name

_log = logging.getLogger("gateway.cell.admin")

LOADED = common_pb2.LOADED


# What a model server answers an Unload of a model it does not have.
_NOT_THERE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
# How often the connection's state is read (`_watch_connection`): a few reads a second of a
# local value, per model server.
_STATE_CHECK_S = 0.05


class _Loaded(TypedDict):
    """What Load tells a server of a model besides its path and overrides."""

    model_key: str
    checkpoint_path: str
    acls: common_pb2.AccessControlLists


def _loaded(model: admin_pb2.Model) -> _Loaded:
    return {
        "model_key": model.model_id,
        "checkpoint_path": model.checkpoint_path,
        "acls": model.acls,
    }


@dataclass(frozen=True)
class SeenModel:
    """What the server reported about one model."""

    status: common_pb2.ModelStatus.ValueType
    methods: frozenset[str]


class ModeletConnection:
    def __init__(
        self,
        *,
        request: admin_pb2.JoinRequest,
        rpc_timeout: float,
        on_change: Callable[[], None],
        on_disconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.address: str = request.address
        self.data_address: str = request.data_address or request.address
        self.debug_address: str = request.debug_address
        self.spec: admin_pb2.ModelServer = request.model_server
        self.last_join_ms = int(time.time() * 1000)
        self.last_ping = time.monotonic()
        self.dormant = False
        #: Model ID -> the model as published when assigned here.
        self.wanted: dict[str, admin_pb2.Model] = {}
        #: Model ID -> when its Load call returned OK (monotonic).
        self.acked: dict[str, float] = {}
        self.seen: dict[str, SeenModel] = {}
        #: Model ID -> why the server failed to load it.
        self.failed: dict[str, str] = {}
        # Models whose copy on the server is to be unloaded (`evict`): until it is, what the
        # server reports of them is that copy, not a replica (even once a load is queued).
        self._evicting: set[str] = set()
        self._rpc_timeout = rpc_timeout
        self._on_change = on_change
        self._channel = grpc.aio.insecure_channel(self.address)
        self._stub = modelet_pb2_grpc.ModeletStub(self._channel)
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._worker = asyncio.create_task(self._run_actions(), name=f"modelet {self.address}")
        self._on_disconnect = on_disconnect
        self._watcher = asyncio.create_task(
            self._watch_connection(), name=f"modelet {self.address} connection"
        )

    def same_server(self, request: admin_pb2.JoinRequest) -> bool:
        return bool(
            self.spec == request.model_server
            and self.data_address == (request.data_address or request.address)
        )

    def serving(self, model_id: str) -> bool:
        """Whether clients may be sent here for the model."""
        if model_id not in self.wanted or model_id in self._evicting:
            return False
        seen = self.seen.get(model_id)
        return model_id in self.acked or (seen is not None and seen.status == LOADED)

    async def poll(self) -> None:
        """Calls GetStatus and records the reply; raises grpc.aio.AioRpcError on failure."""
        started = time.monotonic()
        reply = await self._stub.GetStatus(
            modelet_pb2.GetStatusRequest(include_method_stats=True, include_failure_reasons=True),
            timeout=self._rpc_timeout,
        )
        self.last_ping = time.monotonic()
        self.seen = {
            model.model_key: SeenModel(
                status=model.model_status,
                methods=frozenset(stats.method for stats in model.method_stats),
            )
            for model in reply.models
        }
        for model in reply.models:
            if model.model_status == common_pb2.FAILED:
                self.failed[model.model_key] = model.failure_reason or "unknown reason"
        state = reply.server_status.state if reply.HasField("server_status") else 0
        self.dormant = state == modelet_pb2.GetStatusResponse.ServerStatus.DORMANT
        # A model we loaded that the server no longer has at all (it restarted at the same
        # address) must be assigned again; loads acknowledged after this poll began are kept.
        for model_id in list(self.wanted):
            acked = self.acked.get(model_id)
            if model_id not in self.seen and acked is not None and acked < started:
                _log.warning("model server %s lost model %s", self.address, model_id)
                self._forget(model_id)

    def adopt(self, model: admin_pb2.Model) -> None:
        """Takes over a model the server already has (e.g. after an admin restart)."""
        self.wanted[model.model_id] = model
        self._queue.put_nowait(lambda: self._update_loaded(model))

    def evict(self, model_id: str) -> None:
        """Unloads a model the server has that the admin does not want there (no replica of
        any model it publishes); a load queued after it waits for it."""
        self._evicting.add(model_id)

        async def action() -> None:
            await self._unload(model_id)
            self._evicting.discard(model_id)  # not if the server did not unload it

        self._queue.put_nowait(action)

    def load(self, model: admin_pb2.Model) -> None:
        self.wanted[model.model_id] = model
        self._queue.put_nowait(lambda: self._load(model))

    def update(self, model: admin_pb2.Model, *, reload: bool) -> asyncio.Future[None]:
        """Applies a changed definition: ``reload`` (new path, checkpoint or overrides)
        unloads and loads the model again, as upstream's checkpoint update does; otherwise
        only its ACLs change in place. The future is done once the server has it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if model.model_id not in self.wanted:
            done.set_result(None)
            return done
        self.wanted[model.model_id] = model
        change = self._reload if reload else self._update_loaded

        async def action() -> None:
            try:
                await change(model)
            finally:
                if not done.done():
                    done.set_result(None)

        self._queue.put_nowait(action)
        return done

    def unload(self, model_id: str) -> asyncio.Future[None]:
        """Unloads the model; the future is done once the server has dropped it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        model = self._forget(model_id)
        if model is None:
            done.set_result(None)
            return done

        async def action() -> None:
            try:
                await self._unload(model_id)
            finally:
                if not done.done():
                    done.set_result(None)

        self._queue.put_nowait(action)
        return done

    def _forget(self, model_id: str) -> admin_pb2.Model | None:
        """Drops all this connection knows of the model on the server (wanted, acknowledged,
        failed), so that a later placement starts clean; the model as it was wanted, if so."""
        self.acked.pop(model_id, None)
        self.failed.pop(model_id, None)
        return self.wanted.pop(model_id, None)

    def wake_up(self) -> None:
        self._queue.put_nowait(self._wake_up)

    async def close(self) -> None:
        self._worker.cancel()
        self._watcher.cancel()
        await asyncio.gather(self._worker, self._watcher, return_exceptions=True)
        await self._channel.close(grace=None)

    async def _watch_connection(self) -> None:
        """Reports within ``_STATE_CHECK_S`` when the connection to the server drops (it
        exited or crashed), so the admin polls it now rather than at the next tick.

        It reads the channel's state rather than waiting for a change: a cancelled
        ``wait_for_state_change`` leaves grpc's watch pending (closing the channel did not
        always end it), to complete later on whichever event loop polls grpc then; one that
        had closed logged 'Event loop is closed' (an ERROR in a later test's records)."""
        state = self._channel.get_state(try_to_connect=True)
        while True:
            await asyncio.sleep(_STATE_CHECK_S)
            previous, state = state, self._channel.get_state(try_to_connect=False)
            if previous == grpc.ChannelConnectivity.READY and state != previous:
                self._on_disconnect()

    async def _run_actions(self) -> None:
        while True:
            action = await self._queue.get()
            try:
                await action()
            except grpc.aio.AioRpcError as exc:
                _log.warning("model server %s: %s: %s", self.address, exc.code(), exc.details())
            self._on_change()

    async def _load(self, model: admin_pb2.Model) -> None:
        model_id: str = model.model_id
        if model_id not in self.wanted:
            return  # unassigned before its turn came
        _log.info("loading %s onto %s", model.model_id, self.address)
        try:
            await self._stub.Load(
                modelet_pb2.LoadRequest(
                    **_loaded(model), model_path=model.model_path, overrides=model.overrides
                )
            )
        except grpc.aio.AioRpcError as exc:
            if model_id not in self.wanted:
                raise
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                # The server, not the model: it is gone, or restarting at its address (the
                # cell restarts a crashed one on its port within a second, before this admin
                # sees it die). Not wanted here, the model is placed again at the next refresh,
                # here once the server is back or elsewhere once it is dropped. Recorded as a
                # load failure, it stayed one on the restarted server, which never got a Load.
                self._forget(model_id)
            else:
                # Without the ": FailedPrecondition" suffix: the admin's error adds its own.
                details = exc.details() or exc.code().name
                self.failed[model_id] = details.removesuffix(": " + go_code_name(exc.code()))
            raise
        self.failed.pop(model_id, None)
        acked = time.monotonic()
        _log.info("loaded %s onto %s", model.model_id, self.address)
        try:
            # Learn the model's method names now rather than at the next poll, so List shows
            # them. Only then does the load count (`serving`): a refresh whose poll began
            # before the load finished would otherwise show the replica ready without its
            # methods, and a client that waited for it would find none.
            await self.poll()
        finally:
            if model_id in self.wanted:
                self.acked[model_id] = acked

    async def _reload(self, model: admin_pb2.Model) -> None:
        _log.info("reloading %s on %s", model.model_id, self.address)
        self.acked.pop(model.model_id, None)
        await self._unload(model.model_id)
        await self._load(model)

    async def _update_loaded(self, model: admin_pb2.Model) -> None:
        # ACLs only: an upstream model server loads the model anew from any checkpoint given
        # here, and this change keeps the one it has (a new one goes through `_reload`).
        await self._stub.UpdateLoaded(
            modelet_pb2.UpdateLoadedRequest(model_key=model.model_id, acls=model.acls),
            timeout=self._rpc_timeout,
        )

    async def _unload(self, model_id: str) -> None:
        _log.info("unloading %s from %s", model_id, self.address)
        try:
            await self._stub.Unload(modelet_pb2.UnloadRequest(model_key=model_id))
        except grpc.aio.AioRpcError as exc:
            # The server does not have it: gone is what was asked. Upstream's model servers
            # (and this project's) answer INVALID_ARGUMENT for that; NOT_FOUND from older ones.
            if exc.code() not in _NOT_THERE:
                raise
        self.seen.pop(model_id, None)

    async def _wake_up(self) -> None:
        await self._stub.WakeUp(modelet_pb2.WakeUpRequest(), timeout=self._rpc_timeout)
