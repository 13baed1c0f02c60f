"""The embedded admin server's sax.Admin API over real sockets, with raw generated stubs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from saxml.protobuf import admin_pb2, modelet_pb2

from gateway.cell import AdminServer, ModelServer, _grpc_server, joined
from gateway.cell._errors import CellStartError
from gateway.cell._files import CellFiles, CorruptCellFileError
from gateway.cell.admin.manager import Manager
from gateway.cell.admin.modelet import ModeletConnection
from gateway.cell.modelserver.modelet import ModeletServicer
from gateway.cell.settings import CellSettings
from gateway.common.errors import SaxError
from gateway.common.names import outside_cell
from gateway.common.revision import EXPECT_KEY, revision
from gateway.common.rpc import Context
from gateway.common.storage import StorageError
from tests._closed_loops import left_to_later_loops
from tests._storage import frozen
from tests.integration._cell_fixtures import (
    CELL,
    TEST_LM,
    InprocCell,
    addresses,
    admin_stub,
    eventually,
    fast_settings,
    inproc,
    publish,
    refusing_every_call,
    stand_in_server,
    stand_in_server_in_a_thread,
)

Code: TypeAlias = grpc.StatusCode


def _model(
    model_id: str,
    *,
    model_path: str = TEST_LM,
    checkpoint_path: str = "None",
    requested_num_replicas: int = 1,
) -> admin_pb2.Model:
    return admin_pb2.Model(
        model_id=model_id,
        model_path=model_path,
        checkpoint_path=checkpoint_path,
        requested_num_replicas=requested_num_replicas,
    )


async def _error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(
    ("model", "code", "go_name"),
    [
        (_model("/sax/test/Bad"), Code.INVALID_ARGUMENT, "InvalidArgument"),
        (_model("/sax/other/foo"), Code.INVALID_ARGUMENT, "InvalidArgument"),
        (_model("sax/test/foo"), Code.INVALID_ARGUMENT, "InvalidArgument"),
        (_model("/sax/test/foo", model_path="1bad"), Code.INVALID_ARGUMENT, "InvalidArgument"),
        (_model("/sax/test/foo", checkpoint_path=""), Code.INVALID_ARGUMENT, "InvalidArgument"),
        (
            _model("/sax/test/foo", requested_num_replicas=-1),
            Code.INVALID_ARGUMENT,
            "InvalidArgument",
        ),
    ],
)
async def test_publish_validation(
    inproc_cell: InprocCell, model: admin_pb2.Model, code: Code, go_name: str
) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        error = await _error(admin.Publish(admin_pb2.PublishRequest(model=model)))
    assert error.code() == code
    assert (error.details() or "").endswith(f": {go_name}")


async def test_duplicate_and_unknown_models(inproc_cell: InprocCell) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        await publish(admin, "foo")
        error = await _error(admin.Publish(admin_pb2.PublishRequest(model=_model(f"{CELL}/foo"))))
        assert (error.code(), error.details()) == (
            Code.ALREADY_EXISTS,
            "model /sax/test/foo already exists: AlreadyExists",
        )
        unknown = f"{CELL}/nope"
        calls: list[Awaitable[object]] = [
            admin.List(admin_pb2.ListRequest(model_id=unknown)),
            admin.Unpublish(admin_pb2.UnpublishRequest(model_id=unknown)),
            admin.Update(admin_pb2.UpdateRequest(model=_model(unknown))),
            admin.WatchLoc(admin_pb2.WatchLocRequest(model_id=unknown)),
            admin.WaitForReady(admin_pb2.WaitForReadyRequest(model_id=unknown, num_replicas=1)),
            admin.Stats(admin_pb2.StatsRequest(model_id=unknown)),
        ]
        for call in calls:
            error = await _error(call)
            assert error.code() == Code.NOT_FOUND
            assert error.details() == "model /sax/test/nope is not published: NotFound"
        redeployed = _model(f"{CELL}/foo")
        redeployed.uuid = b"another deployment"
        error = await _error(admin.Update(admin_pb2.UpdateRequest(model=redeployed)))
        assert error.code() == Code.FAILED_PRECONDITION
        assert (error.details() or "").startswith("uuid can't be changed")
        # As upstream's validator: a model's path names what it is; a new path is a new model.
        moved = _model(f"{CELL}/foo", model_path="sax_gateway.testing.TestVision")
        error = await _error(admin.Update(admin_pb2.UpdateRequest(model=moved)))
        assert (error.code(), error.details()) == (
            Code.INVALID_ARGUMENT,
            "invalid model update: model path can't be changed: InvalidArgument",
        )
        [listed] = (await admin.List(admin_pb2.ListRequest())).published_models
        assert listed.model.model_path == TEST_LM


async def test_an_update_made_from_a_stale_read_is_aborted(inproc_cell: InprocCell) -> None:
    # What two gateway processes' read-modify-write changes of one model rely on: the admin
    # applies an Update only if the model is still as the writer read it.
    async with admin_stub(inproc_cell.admin.address) as admin:
        model_id = await publish(admin, "stale", replicas=0, wait=False)
        [read] = (await admin.List(admin_pb2.ListRequest(model_id=model_id))).published_models
        first, second = admin_pb2.Model(), admin_pb2.Model()
        first.CopyFrom(read.model)
        first.admin_acl = "acl/first"
        second.CopyFrom(read.model)
        second.requested_num_replicas = 1
        sent = ((EXPECT_KEY, revision(read.model)),)
        await admin.Update(admin_pb2.UpdateRequest(model=first), metadata=sent)
        error = await _error(admin.Update(admin_pb2.UpdateRequest(model=second), metadata=sent))
        assert (error.code(), error.details()) == (
            Code.ABORTED,
            f"model {model_id} changed since it was read; read it again: Aborted",
        )
        [now] = (await admin.List(admin_pb2.ListRequest(model_id=model_id))).published_models
        assert (now.model.admin_acl, now.model.requested_num_replicas) == ("acl/first", 0)
        # Without the metadata (an upstream client), the last writer wins, as upstream's.
        await admin.Update(admin_pb2.UpdateRequest(model=second))
        [now] = (await admin.List(admin_pb2.ListRequest(model_id=model_id))).published_models
        assert (now.model.admin_acl, now.model.requested_num_replicas) == ("", 1)


async def test_update_changes_replicas_and_unpublish_unloads(inproc_cell: InprocCell) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        model_id = await publish(admin, "foo", replicas=1)
        await admin.Update(
            admin_pb2.UpdateRequest(model=_model(model_id, requested_num_replicas=2))
        )
        await admin.WaitForReady(
            admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=2), timeout=5
        )
        assert len(await addresses(admin, model_id)) == 2
        await admin.Unpublish(admin_pb2.UnpublishRequest(model_id=model_id))

        async def unloaded() -> bool:
            servers = inproc_cell.model_servers
            return not any(s.loaded.status(failures=False, method_stats=False) for s in servers)

        await eventually(unloaded, timeout=5)
        # Once the unloads are issued, the name can be published again.
        for _ in range(100):
            try:
                await publish(admin, "foo", replicas=1)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == Code.UNAVAILABLE
                await asyncio.sleep(0.05)


async def test_an_acl_change_leaves_the_loaded_model_be(inproc_cell: InprocCell) -> None:
    # An upstream model server loads a model anew when UpdateLoaded carries a checkpoint (as
    # does the embedded one): an update that changes only ACLs must send none, or every SetAcl
    # reloads the model on every server (calls fail meanwhile: minutes, for a big model).
    async with admin_stub(inproc_cell.admin.address) as admin:
        model_id = await publish(admin, "acl-in-place", replicas=1)
        (server,) = [
            s
            for s in inproc_cell.model_servers
            if s.loaded.status(failures=False, method_stats=False)
        ]
        with server.loaded.call(model_id, "lm.generate"):
            pass  # one successful call in the model's statistics

        def generate_successes() -> float:
            (model,) = server.loaded.status(failures=False, method_stats=True)
            return {s.method: s for s in model.method_stats}["lm.generate"].successes_per_second

        assert generate_successes() > 0
        changed = _model(model_id)
        changed.acls.items["lm.generate"] = "acl/team"
        await admin.Update(admin_pb2.UpdateRequest(model=changed))
        assert generate_successes() > 0  # the same loaded model: not loaded anew
        # A new checkpoint is loaded anew, as upstream's does.
        changed.checkpoint_path = "gs://b/ckpt-2"
        await admin.Update(admin_pb2.UpdateRequest(model=changed))
        assert generate_successes() == 0


async def test_watchloc_long_poll(inproc_cell: InprocCell) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        model_id = await publish(admin, "foo", replicas=0, wait=False)
        # A caller that does not know this admin gets the full (here: empty) set at once
        # (milliseconds), where one that waited would wait for a change that never comes:
        # 10 s, not 2 s, for a loaded host.
        first = await admin.WatchLoc(admin_pb2.WatchLocRequest(model_id=model_id), timeout=10)
        assert first.admin_server_id == inproc_cell.admin.server_id
        assert first.result.has_fullset and list(first.result.values) == []
        seqno = first.result.next_seqno

        # Up to date: the call waits for the next change.
        watch = asyncio.ensure_future(
            admin.WatchLoc(
                admin_pb2.WatchLocRequest(
                    model_id=model_id, admin_server_id=first.admin_server_id, seqno=seqno
                ),
                timeout=10,
            )
        )
        await asyncio.sleep(0.3)
        assert not watch.done()
        await admin.Update(
            admin_pb2.UpdateRequest(model=_model(model_id, requested_num_replicas=1))
        )
        change = await watch
        assert not change.result.has_fullset
        (mutation,) = change.result.changelog
        assert mutation.addition in {s.address for s in inproc_cell.model_servers}
        assert change.result.next_seqno == seqno + 1

        # A caller ahead of the admin is told where the admin is.
        ahead = await admin.WatchLoc(
            admin_pb2.WatchLocRequest(
                model_id=model_id, admin_server_id=first.admin_server_id, seqno=seqno + 50
            ),
            timeout=2,
        )
        assert ahead.result.next_seqno == seqno + 1 and not ahead.result.changelog

        # Unpublishing releases waiting watchers with an empty full set.
        watch = asyncio.ensure_future(
            admin.WatchLoc(
                admin_pb2.WatchLocRequest(
                    model_id=model_id,
                    admin_server_id=first.admin_server_id,
                    seqno=change.result.next_seqno,
                ),
                timeout=10,
            )
        )
        await asyncio.sleep(0.1)
        await admin.Unpublish(admin_pb2.UnpublishRequest(model_id=model_id))
        released = await watch
        assert released.result.has_fullset and list(released.result.values) == []


async def test_wait_for_ready_is_cancelled_by_unpublish(inproc_cell: InprocCell) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        model_id = await publish(admin, "foo", replicas=0, wait=False)
        waiting = asyncio.ensure_future(
            admin.WaitForReady(
                admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=1), timeout=10
            )
        )
        await asyncio.sleep(0.2)
        await admin.Unpublish(admin_pb2.UnpublishRequest(model_id=model_id))
        error = await _error(waiting)
        assert error.code() == Code.CANCELLED
        assert (error.details() or "").endswith(": Canceled")


class _SlowLoads:
    """Model servers whose loads take 0.5 s (real ones take minutes), whose status replies to
    polls that arrived mid-load come back 0.1 s after the load ends (what the server had when
    asked: no model yet), and whose first status reply after a load lags 0.5 s: the order in
    which a loaded host answers the admin's polls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._loaded = asyncio.Event()
        self._loading = False
        self._lag_next = False
        load, get_status = ModeletServicer.Load, ModeletServicer.GetStatus

        async def slow_load(
            servicer: ModeletServicer, request: modelet_pb2.LoadRequest, context: Context
        ) -> modelet_pb2.LoadResponse:
            self._loading = True
            await asyncio.sleep(0.5)
            try:
                return await load(servicer, request, context)
            finally:
                self._loading, self._lag_next = False, True
                self._loaded.set()

        async def lagging_status(
            servicer: ModeletServicer, request: modelet_pb2.GetStatusRequest, context: Context
        ) -> modelet_pb2.GetStatusResponse:
            reply = await get_status(servicer, request, context)
            if self._loading:
                await self._loaded.wait()
                await asyncio.sleep(0.1)
            elif self._lag_next:
                self._lag_next = False
                await asyncio.sleep(0.5)
            return reply

        # Before the servers start: gRPC binds the servicer's methods when it registers them.
        monkeypatch.setattr(ModeletServicer, "Load", slow_load)
        monkeypatch.setattr(ModeletServicer, "GetStatus", lagging_status)


async def test_a_replica_counts_as_ready_only_with_its_method_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll that began before a load finished says nothing of the model. Counting the replica
    # as ready on the load's reply alone let that poll's refresh end WaitForReady while List
    # still had no method names (so /v1/models judged the model by none): the race a full
    # test run hit.
    _SlowLoads(monkeypatch)
    async with inproc(fast_settings(tmp_path)) as cell, admin_stub(cell.admin.address) as admin:
        model_id = await publish(admin, "lm")
        listed = await admin.List(admin_pb2.ListRequest(model_id=model_id))
    assert listed.published_models[0].modelet_addresses != []
    assert "lm.generate" in listed.published_models[0].model.method_names


@asynccontextmanager
async def _resetting(port: int) -> AsyncIterator[None]:
    """Listens on ``port`` and resets every connection: a port whose server is dying, or is
    restarting and not serving yet (what a model server the cell restarts on its port is for
    a moment). Its GetStatus and Load fail UNAVAILABLE, not "connection refused"."""

    async def reset(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()

    # Beside the server still listening there (which lets it: SO_REUSEPORT), so that once it
    # stops no connection is refused: a refusal gets the server dropped at once.
    server = await asyncio.start_server(reset, "127.0.0.1", port, reuse_port=True)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def test_a_model_placed_on_a_server_restarting_at_its_address_loads_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The admin kept a crashed server for server_dead_after (its port did not refuse: the cell
    # was restarting it there) and placed a publish on it. The Load's UNAVAILABLE was recorded
    # as the model's load failure, for good: the restarted server joined as the same server,
    # got no Load, and WaitForReady answered "failed to load" (the fault tests' CI failure).
    settings = dataclasses.replace(
        fast_settings(tmp_path, num_model_servers=1), server_dead_after=60.0
    )
    # The cell's servers refuse to share a port (a busy one is an error); this one must let
    # the stand-in take it over with no moment in between (`_resetting`).
    shared = [(k, 1 if k == "grpc.so_reuseport" else v) for k, v in _grpc_server._OPTIONS]
    monkeypatch.setattr(_grpc_server, "_OPTIONS", shared)
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        old = cell.model_servers[0]
        port = int(old.address.rsplit(":", 1)[1])
        async with _resetting(port):
            await old.stop(grace=0)
            model_id = await publish(admin, "lm", wait=False)

            async def load_failed() -> bool:
                return any(
                    r.levelname == "WARNING" and "UNAVAILABLE" in r.getMessage()
                    for r in caplog.records
                    if r.name == "gateway.cell.admin"
                )

            await eventually(load_failed)
        back = ModelServer(settings, port=port)
        cell.model_servers[0] = back
        await back.start()
        await admin.WaitForReady(
            admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=1), timeout=20
        )
        assert await addresses(admin, model_id) == [back.address]


async def test_state_survives_restart(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, num_model_servers=0)
    admin = AdminServer(settings)
    await admin.start()
    async with admin_stub(admin.address) as stub:
        await publish(stub, "kept", replicas=3, overrides={"text": "hi"}, wait=False)
        await publish(stub, "gone", wait=False)
        await stub.Unpublish(admin_pb2.UnpublishRequest(model_id=f"{CELL}/gone"))
    first_id = admin.server_id
    await admin.stop(grace=0)

    state = admin_pb2.State.FromString(
        (tmp_path / "root" / "fsroot" / "sax" / "test" / "state.proto").read_bytes()
    )
    assert [m.model_id for m in state.models] == [f"{CELL}/kept"]
    config = admin_pb2.Config.FromString(
        (tmp_path / "root" / "sax" / "test" / "config.proto").read_bytes()
    )
    assert config.fs_root == str(tmp_path / "root" / "fsroot")

    async with inproc(settings) as cell, admin_stub(cell.admin.address) as stub:
        assert cell.admin.server_id != first_id
        (kept,) = (await stub.List(admin_pb2.ListRequest())).published_models
        assert kept.model.model_id == f"{CELL}/kept"
        assert kept.model.requested_num_replicas == 3
        assert dict(kept.model.overrides) == {"text": "hi"}
        assert not kept.model.uuid  # like upstream, List keeps the deployment ID private
        location = admin_pb2.Location.FromString(
            (tmp_path / "root" / "sax" / "test" / "location.proto").read_bytes()
        )
        assert location.location == cell.admin.address


async def test_method_names_that_storage_refuses_are_logged_once_and_saved_once_it_mends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A model that loaded while the fs root refused writes (full, read-only) left its method
    # names unsaved, and every refresh (each poll, 10 s by default) logged ERROR "refresh
    # failed" with a traceback of the save, for as long as the disk refused.
    caplog.set_level(logging.DEBUG, logger="gateway.common.storage")
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = tmp_path / "root" / "fsroot" / "sax" / "test" / "state.proto"
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        model_id = await publish(admin, "lm", wait=False)  # no server yet: no method names
        with frozen(state.parent):
            server = ModelServer(settings)
            cell.model_servers.append(server)
            await server.start()
            await admin.WaitForReady(
                admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=1), timeout=20
            )

            async def refused_thrice() -> bool:
                failed = [r for r in caplog.records if r.getMessage().startswith("writing ")]
                return len(failed) >= 3

            await eventually(refused_thrice)
        saved = admin_pb2.State()

        async def saved_methods() -> bool:
            saved.ParseFromString(state.read_bytes())
            return "lm.generate" in saved.models[0].method_names

        await eventually(saved_methods)
    # The cell's own lines: grpc's poller may log an asyncio ERROR of its own when the test's
    # loop closes under it (seen once in a full run), which says nothing of the cell.
    logged = [
        (r.name, r.levelname)
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("gateway.")
    ]
    assert logged == [("gateway.common.storage", "WARNING")], caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"][-1].startswith(
        f"writing {state} works again, after "
    )


async def test_a_location_file_removed_under_the_admin_names_it_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An admin whose location.proto was deleted (a cleanup of SAX_ROOT, a restore without it)
    # served on, but never named itself again: every client that looked for it since (a
    # gateway restarted, saxutil) got UNAVAILABLE "no admin server location for /sax/test
    # yet" until the admin itself restarted.
    settings = fast_settings(tmp_path)
    cell_dir = tmp_path / "root" / "sax" / "test"
    location = cell_dir / "location.proto"
    async with inproc(settings, num_model_servers=0) as cell:
        named = location.read_bytes()
        assert admin_pb2.Location.FromString(named).location == cell.admin.address

        async def named_again() -> bool:
            return location.exists() and location.read_bytes() == named

        location.unlink()
        await eventually(named_again)
        # Emptied (a truncation, a restore of a bad copy): read as naming no admin, so model
        # servers restarted since never joined again; left empty, it was never written.
        location.write_bytes(b"")
        await eventually(named_again)
        # One that does not parse is another admin's takeover half written (upstream's admin
        # writes it in place): left for that admin to finish.
        garbled = b"\xff garbage"
        location.write_bytes(garbled)
        await asyncio.sleep(3 * settings.location_watch_interval)
        assert location.read_bytes() == garbled
        location.write_bytes(named)
        # The whole SAX_ROOT gone (moved away, a volume unmounted): nothing is made in its
        # place, which would be a new SAX_ROOT under the mount point.
        cell_dir.rename(tmp_path / "away")
        await asyncio.sleep(3 * settings.location_watch_interval)
        assert not cell_dir.exists()
        (tmp_path / "away").rename(cell_dir)
        async with admin_stub(cell.admin.address) as admin:  # it still serves, and saves
            await publish(admin, "after", replicas=0, wait=False)
        assert not cell.admin.superseded.is_set()
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "gateway.cell.admin"
    ]
    assert warned == 2 * [
        f"location.proto of {CELL} was gone or empty (removed or emptied outside this admin "
        f"server); named this one, {cell.admin.address}, again"
    ]


async def test_an_admin_starts_on_a_read_only_fs_root_holding_a_cut_short_save(
    tmp_path: Path,
) -> None:
    # A save cut short by a kill leaves its temp file, which the next start removes; on a
    # disk that turned read-only meanwhile (ext4's errors=remount-ro) the removal failed and
    # the admin could not start at all: every listing and change of the cell 503, for good.
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = tmp_path / "root" / "fsroot" / "sax" / "test" / "state.proto"
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        await publish(admin, "kept", replicas=0, wait=False)
    leftover = state.with_name(".state.proto.x1y2z3.tmp")
    leftover.write_bytes(b"cut short")
    with frozen(state.parent):
        async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
            (kept,) = (await admin.List(admin_pb2.ListRequest())).published_models
            assert kept.model.model_id == f"{CELL}/kept"
            refused = await _error(publish(admin, "new", replicas=0, wait=False))
            assert refused.code() == Code.INTERNAL
    assert leftover.exists()
    async with inproc(settings):  # writable again: the leftover goes
        pass
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.proto"]


async def test_stats_and_join_validation(inproc_cell: InprocCell) -> None:
    async with admin_stub(inproc_cell.admin.address) as admin:
        stats = await admin.Stats(admin_pb2.StatsRequest())
        (by_type,) = stats.model_server_type_stats
        assert by_type.chip_type == admin_pb2.ModelServer.CHIP_TYPE_CPU
        assert by_type.num_replicas == 2
        assert stats.num_servers_by_servable_model_path[TEST_LM] == 2
        error = await _error(admin.Join(admin_pb2.JoinRequest(address="")))
        assert error.code() == Code.INVALID_ARGUMENT
        # A server the admin cannot dial back is not joined.
        error = await _error(
            admin.Join(
                admin_pb2.JoinRequest(address="127.0.0.1:1", model_server=admin_pb2.ModelServer()),
                timeout=5,
            )
        )
        assert error.code() == Code.UNAVAILABLE


class _NeverAnswer(grpc.GenericRpcHandler):
    """A model server that takes every call and answers none (hung, or its host stalled)."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def hang(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            await asyncio.Event().wait()
            return b""

        return grpc.unary_unary_rpc_method_handler(hang)


async def test_a_join_whose_caller_gives_up_during_the_dial_back_leaves_no_connection(
    tmp_path: Path,
) -> None:
    # A Join's dial-back (a GetStatus to the joining server) that the joiner stopped waiting
    # for cancelled the handler: only a failed dial-back closed the connection it had opened,
    # so its channel and its two tasks (the action queue, the connectivity watch) were left
    # running for the admin's life, one set per such Join. The watch's grpc operation then
    # completed on an event loop that had ended (an asyncio ERROR in a later test).
    def add_to(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((_NeverAnswer(),))

    async with (
        stand_in_server(add_to) as hung,
        inproc(fast_settings(tmp_path, num_model_servers=0)) as cell,
        admin_stub(cell.admin.address) as admin,
    ):
        request = admin_pb2.JoinRequest(address=hung, model_server=admin_pb2.ModelServer())
        error = await _error(admin.Join(request, timeout=0.3))  # shorter than rpc_timeout
        assert error.code() == Code.DEADLINE_EXCEEDED

        async def modelet_gone() -> bool:
            names = {task.get_name() for task in asyncio.all_tasks()}
            return not names & {f"modelet {hung}", f"modelet {hung} connection"}

        await eventually(modelet_gone)


def test_a_closed_model_server_connection_leaves_no_grpc_operation_to_a_later_loop() -> None:
    # The admin watches each model server's channel (a wait for its state to change) and
    # closed the connection by cancelling that wait: grpc's watch stayed pending, the
    # channel's close completed it on the next event loop to poll grpc, and a loop that had
    # ended by then logged 'Event loop is closed' (an ERROR that failed an unrelated test's
    # check of its records, CI stop 46). The server runs on a loop of its own, as a model
    # server in its own process does: on the loop under test, its operations were left over
    # too now and then, and failed this test for them.
    with stand_in_server_in_a_thread(refusing_every_call(Code.UNIMPLEMENTED)) as address:

        async def connected_then_closed() -> None:
            connection = ModeletConnection(
                request=admin_pb2.JoinRequest(address=address),
                rpc_timeout=5.0,
                on_change=lambda: None,
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await connection.poll()  # connected: its watch waits for the next change
            await connection.close()  # the last thing its loop runs, as at an admin's stop

        # Whether the watch completes before its loop's last turn is a race: five rounds make
        # the record all but certain with a cancelled watch (it was left in 10 rounds of 10).
        assert [left_to_later_loops(connected_then_closed) for _ in range(5)] == [[]] * 5


async def test_a_corrupt_state_file_stops_the_admin_with_one_line_and_is_kept(
    tmp_path: Path,
) -> None:
    # It was a DecodeError traceback, and the cell's launcher restarted the admin into it for
    # ever; the file holds every published model, so the admin must neither start over it
    # nor rewrite it.
    settings = fast_settings(tmp_path)
    state = Path(settings.effective_fs_root) / "sax" / "test" / "state.proto"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a sax.State")
    admin = AdminServer(settings)
    with pytest.raises(CorruptCellFileError) as corrupt:
        await admin.start()
    await admin.stop()
    assert str(corrupt.value).startswith(f"{state} is corrupt")
    assert "move it away to start with no published models" in str(corrupt.value)
    assert state.read_bytes() == b"not a sax.State"


async def test_a_state_that_a_file_or_folder_is_in_the_way_of_stops_the_admin(
    tmp_path: Path,
) -> None:
    # The cell's state folder replaced by a file (or state.proto by a folder) read as "no
    # state.proto": the admin started with no model, its servers unloaded every one, and once
    # the operator put the folder back, it wrote its empty state over it: every published
    # model lost for good.
    settings = fast_settings(tmp_path, num_model_servers=0)
    folder = Path(settings.effective_fs_root) / "sax" / "test"
    state = folder / "state.proto"
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        await publish(admin, "kept", replicas=0, wait=False)
    saved = state.read_bytes()
    folder.rename(folder.with_name("moved"))
    folder.write_bytes(b"")  # a file where the folder was
    assert await _start_refused(settings) == (
        f"reading {state} failed: [Errno 20] Not a directory: '{state}'"
    )
    folder.unlink()
    folder.with_name("moved").rename(folder)
    state.rename(folder / "kept")
    state.mkdir()  # a folder where state.proto was
    assert await _start_refused(settings) == (
        f"reading {state} failed: [Errno 21] Is a directory: '{state}'"
    )
    state.rmdir()
    (folder / "kept").rename(state)
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        (kept,) = (await admin.List(admin_pb2.ListRequest())).published_models
        assert kept.model.model_id == f"{CELL}/kept"
    assert state.read_bytes() == saved


async def _start_refused(settings: CellSettings) -> str:
    """The StorageError an admin on ``settings`` stops its start with."""
    admin_server = AdminServer(settings)
    with pytest.raises(StorageError) as refused:
        await admin_server.start()
    await admin_server.stop()
    return str(refused.value)


async def test_an_admin_started_before_its_fs_root_was_mounted_serves_its_state_once_it_is(
    tmp_path: Path,
) -> None:
    # An admin that started while its fs root was not there (a volume mounted late) served no
    # model, and once the volume came, wrote its empty state over state.proto within
    # location_watch_interval: every published model lost for good.
    settings = fast_settings(tmp_path, num_model_servers=0)
    fs_root = Path(settings.effective_fs_root)
    state = fs_root / "sax" / "test" / "state.proto"
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        await publish(admin, "kept", replicas=0, wait=False)
    saved = state.read_bytes()
    volume = fs_root.rename(tmp_path / "volume")  # unmounted
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        assert (await admin.List(admin_pb2.ListRequest())).published_models == []
        fs_root.rename(tmp_path / "mount-point")
        volume.rename(fs_root)  # mounted

        async def stopped_to_read_it() -> bool:
            return cell.admin.reread.is_set()

        await eventually(stopped_to_read_it)
        assert state.read_bytes() == saved
    async with inproc(settings) as cell, admin_stub(cell.admin.address) as admin:
        (kept,) = (await admin.List(admin_pb2.ListRequest())).published_models
        assert kept.model.model_id == f"{CELL}/kept"


async def test_an_fs_root_the_cell_does_not_use_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # config.proto fixes a cell's fs root when the cell is created (upstream's admin_config
    # cannot change it either); a later --fs-root elsewhere was ignored without a word, and
    # the operator looked for state.proto where it was not.
    first = dataclasses.replace(fast_settings(tmp_path), fs_root=str(tmp_path / "fs-a"))
    admin = AdminServer(first)
    await admin.start()
    await admin.stop()
    moved = dataclasses.replace(first, fs_root=str(tmp_path / "fs-b"))
    admin = AdminServer(moved)
    await admin.start()
    await admin.stop()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == (
        f"--fs-root {tmp_path / 'fs-b'} is not used: the cell /sax/test keeps its state under "
        f"{tmp_path / 'fs-a'}, as its config.proto says (a cell's fs root cannot change)"
    )


async def test_a_second_admin_of_a_live_cell_refuses_to_start(tmp_path: Path) -> None:
    # Two admins of one cell (a second `saxgw up` on the same roots, other ports) each saved
    # their own view into one state.proto, and each overwrote the other's publishes.
    settings = fast_settings(tmp_path)
    first = AdminServer(settings)
    await first.start()
    try:
        async with admin_stub(first.address) as admin:
            await publish(admin, "kept", replicas=0, wait=False)
        second = AdminServer(settings)
        with pytest.raises(CellStartError) as refused:
            await second.start()
        await second.stop()
        assert str(refused.value) == (
            f"another admin server of /sax/test answers at {first.address} (its location.proto "
            "names it): two admins of one cell overwrite each other's saved state; stop it "
            "first"
        )
        location = tmp_path / "root" / "sax" / "test" / "location.proto"
        assert admin_pb2.Location.FromString(location.read_bytes()).location == first.address
    finally:
        await first.stop()
    # Once it is gone, a new admin takes over (and finds what the first one saved).
    third = AdminServer(settings)
    await third.start()
    try:
        async with admin_stub(third.address) as admin:
            listed = await admin.List(admin_pb2.ListRequest())
        assert [m.model.model_id for m in listed.published_models] == ["/sax/test/kept"]
    finally:
        await third.stop()


async def test_an_admin_starts_where_its_location_names_another_cells_admin(
    tmp_path: Path,
) -> None:
    # Its location.proto names an address that the admin of another cell took over (two
    # `saxgw up` of two cells on one SAX_ROOT; a reused pod IP): that admin answered the
    # probe, and this cell's admin refused to start for good ("another admin server of
    # /sax/test answers at ..."), restarted and refused again by `python -m gateway.cell`.
    settings = fast_settings(tmp_path, num_model_servers=0)
    other = AdminServer(dataclasses.replace(settings, cell="/sax/other"))
    await other.start()
    mine = AdminServer(settings)
    try:
        stale = admin_pb2.Location(location=other.address).SerializeToString()
        location = tmp_path / "root" / "sax" / "test" / "location.proto"
        location.parent.mkdir(parents=True)
        location.write_bytes(stale)
        await mine.start()
        assert admin_pb2.Location.FromString(location.read_bytes()).location == mine.address
    finally:
        await mine.stop()
        await other.stop()


@pytest.mark.parametrize("code", [Code.UNAUTHENTICATED, Code.PERMISSION_DENIED])
async def test_an_admin_starts_where_its_location_names_a_server_asking_for_credentials(
    tmp_path: Path, code: Code
) -> None:
    # Its stale location.proto names an address that a gRPC server behind an auth proxy took
    # over (a reused pod IP or port): its refusal counted as an admin's answer, so this
    # cell's admin refused to start, for good, saying "another admin server of /sax/test
    # answers". A Sax admin asks for no credentials, and ends its messages with a Go code.
    settings = fast_settings(tmp_path, num_model_servers=0)
    async with stand_in_server(refusing_every_call(code)) as other:
        location = tmp_path / "root" / "sax" / "test" / "location.proto"
        location.parent.mkdir(parents=True)
        location.write_bytes(admin_pb2.Location(location=other).SerializeToString())
        mine = AdminServer(settings)
        try:
            await mine.start()
            assert admin_pb2.Location.FromString(location.read_bytes()).location == mine.address
        finally:
            await mine.stop()


async def test_an_admin_that_another_took_over_from_saves_nothing(tmp_path: Path) -> None:
    # An admin that hung while another took the cell over (location.proto names that one),
    # then resumed, took changes until it next read location.proto (every 5 s): it
    # acknowledged them and saved its own view over state.proto, so the other admin's
    # acknowledged publishes were gone at its next restart, and this one's never reached it.
    fast = fast_settings(tmp_path, num_model_servers=0)
    first = AdminServer(dataclasses.replace(fast, location_watch_interval=60.0))
    await first.start()
    try:
        async with admin_stub(first.address) as admin:
            await publish(admin, "before", replicas=0, wait=False)
            state = tmp_path / "root" / "fsroot" / "sax" / "test" / "state.proto"
            saved = state.read_bytes()
            other = admin_pb2.Location(location="127.0.0.1:1").SerializeToString()
            (tmp_path / "root" / "sax" / "test" / "location.proto").write_bytes(other)
            published = await _error(publish(admin, "after", replicas=0, wait=False))
            unpublished = await _error(
                admin.Unpublish(admin_pb2.UnpublishRequest(model_id=f"{CELL}/before"))
            )
        for error, failed in (
            (published, "publish /sax/test/after"),
            (unpublished, "unpublish /sax/test/before"),
        ):
            assert error.code() == Code.UNAVAILABLE
            assert error.details() == (
                f"could not {failed}: this admin server no longer serves the cell; retry: "
                "Unavailable"
            )
        assert state.read_bytes() == saved
        assert first.superseded.is_set()  # `python -m gateway.cell.admin` then stops
    finally:
        await first.stop()


async def test_an_admin_writes_its_state_back_over_a_late_save_of_the_admin_it_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An admin hung mid-save (SIGSTOP, a VM paused) while another took the cell over; resumed,
    # its upload landed over the new admin's state.proto (measured on gs://: 1 run in 3 of
    # tests/faults' kind). The new admin kept serving from memory, but its acknowledged
    # publishes were on disk only until its next save: killed before one, its restart lost
    # every one of them. It now finds state.proto changed under it at its next location.proto
    # read, and writes its own state back.
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = tmp_path / "root" / "fsroot" / "sax" / "test" / "state.proto"

    def saved() -> set[str]:
        return {m.model_id for m in admin_pb2.State.FromString(state.read_bytes()).models}

    admin = AdminServer(settings)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:
            await publish(stub, "before", replicas=0, wait=False)
            stale = state.read_bytes()
            await publish(stub, "after", replicas=0, wait=False)
            state.write_bytes(stale)  # the late save of the admin this one replaced

            async def restored() -> bool:
                return saved() == {f"{CELL}/before", f"{CELL}/after"}

            await eventually(restored, timeout=5.0)
            assert not admin.superseded.is_set()
    finally:
        await admin.stop()
    # The WARNING blamed "another admin server" alone: an operator who had put a backup back
    # by hand was told something false, and not that the restore needs the cell stopped.
    [warning] = [r.getMessage() for r in caplog.records if "changed outside" in r.getMessage()]
    assert warning == (
        f"state.proto of {CELL} changed outside this admin server (another admin server that "
        "resumed a save after this one took the cell over, or a copy put back by hand); "
        "writing this admin's state back over it: to restore state.proto from a backup, stop "
        "the cell's admin first (docs/cell.md)"
    )


async def test_a_save_during_which_another_admin_took_the_cell_over_is_not_acknowledged(
    tmp_path: Path,
) -> None:
    # location.proto named this admin when its save began and another one when it ended (it
    # hung mid-save; another admin took over meanwhile). It acknowledged the change, which
    # the other admin had not read: that one's state, written back (or its next save),
    # dropped it. The caller is told to retry, and its retry reaches the other admin.
    settings = fast_settings(tmp_path, num_model_servers=0)
    answers = iter([True, False])  # location.proto before the write, and after it

    async def serves_cell() -> bool:
        return next(answers)

    files = CellFiles(settings)
    manager = Manager(
        settings=settings, files=files, fs_root=settings.effective_fs_root, serves_cell=serves_cell
    )
    await manager.start()
    try:
        with pytest.raises(SaxError) as refused:
            await manager.publish(_model(f"{CELL}/m"))
        assert refused.value.code == Code.UNAVAILABLE
        assert refused.value.message == (
            f"could not publish {CELL}/m: another admin server took the cell over during the "
            "save; retry"
        )
        assert manager.list_models("") == []
    finally:
        await manager.close()


async def test_a_model_server_logs_an_admin_outage_once_not_at_every_location_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each model server logged a WARNING at every location.proto read (every 5 s) while its
    # admin was down, hung, or replaced by a server that is no admin: 720 lines an hour per
    # server, for one outage that the first line said.
    settings = fast_settings(tmp_path)
    async with inproc(settings, num_model_servers=1) as cell:
        await cell.admin.stop(grace=0)
        with caplog.at_level(logging.INFO, logger="gateway.cell.modelserver"):
            await asyncio.sleep(1.0)  # ten of the model server's location reads
            (server,) = cell.model_servers
            server.joined.clear()
            cell.admin = AdminServer(settings)
            await cell.admin.start()
            await asyncio.wait_for(server.joined.wait(), 10)
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "gateway.cell.modelserver" and "join" in r.getMessage()
    ]
    assert len([line for line in lines if line[0] == "WARNING"]) == 1, lines
    assert ("INFO", f"joining the admin of {CELL} works again, after ") in [
        (level, message.rsplit("after ", 1)[0] + "after ") for level, message in lines
    ], lines


async def test_a_model_server_stopped_as_its_admin_stops_logs_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A clean stop of a cell signals its admin and model servers at once: a heartbeat join
    # in flight was refused by the admin that had just closed its port, and the model server
    # logged "joining the admin ... failed" (a WARNING) before its own stop cancelled the
    # loop: test_a_clean_stop_logs_no_warning failed so on a loaded machine.
    async with inproc(fast_settings(tmp_path), num_model_servers=1) as cell:
        (server,) = cell.model_servers
        with caplog.at_level(logging.INFO, logger="gateway.cell.modelserver"):
            await cell.admin.stop(grace=0)
            await asyncio.sleep(0.15)  # a heartbeat (every 0.1 s) is refused meanwhile
            await server.stop(grace=0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_model_server_does_not_join_the_admin_of_another_cell(tmp_path: Path) -> None:
    # Its cell's location.proto names the admin of another cell (two cells on one SAX_ROOT,
    # a stale file, a reused pod IP): the model server joined that admin, which unloaded this
    # cell's models from it (calls to them failed, though the admin's outage alone would have
    # left them serving) and took it as one of its own servers: the other cell placed its
    # replicas on it, and lost them whenever this cell's admin took it back.
    settings = fast_settings(tmp_path)
    other = AdminServer(dataclasses.replace(settings, cell="/sax/other"))
    await other.start()
    try:
        async with inproc(settings, num_model_servers=1) as cell:
            async with admin_stub(cell.admin_address) as admin:
                model = await publish(admin, "kept")
            await cell.admin.stop(grace=0)
            location = tmp_path / "root" / "sax" / "test" / "location.proto"
            location.write_bytes(admin_pb2.Location(location=other.address).SerializeToString())
            await asyncio.sleep(1.0)  # ten of the model server's location reads
            async with admin_stub(other.address) as admin:
                stats = await admin.Stats(admin_pb2.StatsRequest())
                refused = await _error(
                    admin.Join(
                        admin_pb2.JoinRequest(
                            address="127.0.0.1:1", model_server=admin_pb2.ModelServer()
                        ),
                        metadata=((joined.CELL_KEY, CELL),),
                    )
                )
            assert list(stats.model_server_type_stats) == []
            (server,) = cell.model_servers
            status = server.loaded.status(failures=False, method_stats=False)
            assert [m.model_key for m in status] == [model]
            assert refused.code() == Code.INVALID_ARGUMENT
            assert refused.details() == (
                "model server '127.0.0.1:1' of cell '/sax/test' must be within Sax cell "
                "'/sax/other' to join this admin: InvalidArgument"
            )
    finally:
        await other.stop()


async def test_a_cell_made_with_a_relative_fs_root_keeps_its_state_from_any_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `saxgw up` makes its default cell with --fs-root .saxgw/fs-root, and config.proto kept
    # that relative path: the same cell started from another directory (by its SAX_ROOT's
    # absolute path) read its state there, restored no model and saved into a new state.proto,
    # warning meanwhile that --fs-root, the very same directory spelt absolutely, was not used.
    monkeypatch.chdir(tmp_path)
    made = dataclasses.replace(
        fast_settings(tmp_path, num_model_servers=0), sax_root="root", fs_root="fs"
    )
    admin = AdminServer(made)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:
            await publish(stub, "kept", replicas=0, wait=False)
    finally:
        await admin.stop()
    config = admin_pb2.Config.FromString((tmp_path / "root/sax/test/config.proto").read_bytes())
    assert config.fs_root == str(tmp_path / "fs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = dataclasses.replace(made, sax_root=str(tmp_path / "root"), fs_root=str(tmp_path / "fs"))
    admin = AdminServer(moved)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:
            listed = await stub.List(admin_pb2.ListRequest())
    finally:
        await admin.stop()
    assert [m.model.model_id for m in listed.published_models] == [f"{CELL}/kept"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field (``data`` under field ``number``, < 128 bytes)."""
    assert number < 16 and len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


async def test_what_a_newer_writer_stored_in_state_proto_survives_every_change(
    tmp_path: Path,
) -> None:
    # Another writer of state.proto (a newer Sax, or upstream's admin of old with its
    # deprecated last_generation) may store fields this admin does not know. Each save built a
    # new sax.State from the models alone: what the file held beside them was gone at the
    # first publish. A model's own unknown fields were kept, and still are.
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = Path(settings.effective_fs_root) / "sax" / "test" / "state.proto"
    state.parent.mkdir(parents=True)
    kept = _model(f"{CELL}/kept", requested_num_replicas=0)
    kept.uuid = b"\x01" * 16
    stored_model = kept.SerializeToString() + _field(15, b"newer model field")
    state.write_bytes(
        _field(1, stored_model) + bytes([2 << 3, 7]) + _field(14, b"newer state field")
    )
    admin = AdminServer(settings)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:
            await publish(stub, "other", replicas=0, wait=False)
            # As clients update: the listed definition, changed (a newer client's fields too).
            (listed,) = (
                await stub.List(admin_pb2.ListRequest(model_id=kept.model_id))
            ).published_models
            listed.model.requested_num_replicas = 1
            await stub.Update(admin_pb2.UpdateRequest(model=listed.model), timeout=5)
            await stub.Unpublish(admin_pb2.UnpublishRequest(model_id=f"{CELL}/other"))
    finally:
        await admin.stop()
    saved = state.read_bytes()
    assert admin_pb2.State.FromString(saved).last_generation == 7
    assert _field(14, b"newer state field") in saved
    (model,) = admin_pb2.State.FromString(saved).models
    assert (model.model_id, model.requested_num_replicas) == (kept.model_id, 1)
    assert _field(15, b"newer model field") in model.SerializeToString()


async def test_an_update_is_checked_for_what_it_changes_not_what_was_stored(
    tmp_path: Path,
) -> None:
    # A model stored by upstream's admin (an ACL on vm.text_and_image_to_text, which its
    # validator takes) or by an earlier version of this one (an override key the stand-ins
    # refuse since) loads, but every Update checked the whole definition again: its replicas
    # and ACLs could not be changed, and an ACL change was refused naming the override.
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = Path(settings.effective_fs_root) / "sax" / "test" / "state.proto"
    state.parent.mkdir(parents=True)
    stored = _model(f"{CELL}/old", requested_num_replicas=0)
    stored.overrides["retired_key"] = "1"
    stored.acls.items["vm.text_and_image_to_text"] = "acl/a"
    state.write_bytes(admin_pb2.State(models=[stored]).SerializeToString())
    admin = AdminServer(settings)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:

            async def update(change: Callable[[admin_pb2.Model], object]) -> None:
                (listed,) = (await stub.List(admin_pb2.ListRequest())).published_models
                change(listed.model)
                await stub.Update(admin_pb2.UpdateRequest(model=listed.model), timeout=5)

            await update(lambda m: setattr(m, "requested_num_replicas", 2))
            await update(lambda m: m.acls.items.__setitem__("lm.score", "acl/b"))
            # What it changes is checked as a publish would be.
            refused = [
                await _error(update(lambda m: m.overrides.__setitem__("retired_key", "2"))),
                await _error(update(lambda m: m.acls.items.__setitem__("vm.nothing", "acl/c"))),
                await _error(update(lambda m: setattr(m, "requested_num_replicas", -1))),
            ]
            assert [e.code() for e in refused] == [Code.INVALID_ARGUMENT] * 3
            assert "unknown override 'retired_key'" in (refused[0].details() or "")
            (listed,) = (await stub.List(admin_pb2.ListRequest())).published_models
    finally:
        await admin.stop()
    assert listed.model.requested_num_replicas == 2
    assert dict(listed.model.overrides) == {"retired_key": "1"}
    assert dict(listed.model.acls.items) == {
        "vm.text_and_image_to_text": "acl/a",
        "lm.score": "acl/b",
    }


async def test_state_entries_the_admin_cannot_serve_are_kept_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A state.proto copied from another cell's fs root, or written by hand, may hold entries
    # this admin cannot serve. They were served: listed (a client then took the admin for
    # another cell's, and the whole cell's listing failed UNAVAILABLE), placed on its model
    # servers; and of a model stored twice, the first copy was dropped at the next save.
    settings = fast_settings(tmp_path, num_model_servers=0)
    state = Path(settings.effective_fs_root) / "sax" / "test" / "state.proto"
    state.parent.mkdir(parents=True)
    stored = [
        _model("/sax/other/theirs", requested_num_replicas=0),
        _model(f"{CELL}/twice", checkpoint_path="first", requested_num_replicas=0),
        _model("", requested_num_replicas=0),
        _model(f"{CELL}/twice", checkpoint_path="second", requested_num_replicas=0),
        _model(f"{CELL}/ours", requested_num_replicas=0),
    ]
    state.write_bytes(admin_pb2.State(models=stored).SerializeToString())
    admin = AdminServer(settings)
    await admin.start()
    try:
        async with admin_stub(admin.address) as stub:
            listed = (await stub.List(admin_pb2.ListRequest())).published_models
            # Upstream's admin keeps the last of two entries of one model.
            assert [(m.model.model_id, m.model.checkpoint_path) for m in listed] == [
                (f"{CELL}/ours", "None"),
                (f"{CELL}/twice", "second"),
            ]
            await publish(stub, "new", replicas=0, wait=False)
            saved = admin_pb2.State.FromString(state.read_bytes()).models
            assert [(m.model_id, m.checkpoint_path) for m in saved] == [
                ("/sax/other/theirs", "None"),
                (f"{CELL}/twice", "first"),
                ("", "None"),
                (f"{CELL}/new", "None"),
                (f"{CELL}/ours", "None"),
                (f"{CELL}/twice", "second"),
            ]
            # Unpublished, a model is gone with every copy: none comes back at a restart.
            await stub.Unpublish(admin_pb2.UnpublishRequest(model_id=f"{CELL}/twice"))
            saved = admin_pb2.State.FromString(state.read_bytes()).models
            assert [m.model_id for m in saved] == [
                "/sax/other/theirs",
                "",
                f"{CELL}/new",
                f"{CELL}/ours",
            ]
    finally:
        await admin.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    kept = "which this admin does not serve; it is kept there as it is"
    assert warnings == [
        f"{state} holds '/sax/other/theirs' ({outside_cell('/sax/other/theirs', CELL)}), {kept}",
        f"{state} holds '/sax/test/twice' (a later entry of it is served), {kept}",
        f"{state} holds '' (model ID '' should have the form /sax/<cell name>/<model name>), "
        f"{kept}",
    ]


@pytest.mark.parametrize(
    "contents", [b"", admin_pb2.Config(admin_acl="acl/ops").SerializeToString()]
)
async def test_a_config_file_without_an_fs_root_stops_the_admin_with_one_line_and_is_kept(
    tmp_path: Path, contents: bytes
) -> None:
    # A zero-length config.proto (a copy cut short, a file truncated by hand) parses as a
    # sax.Config without fs_root: the admin stopped with a ValueError traceback.
    settings = fast_settings(tmp_path)
    config = Path(settings.sax_root) / "sax" / "test" / "config.proto"
    config.parent.mkdir(parents=True)
    config.write_bytes(contents)
    admin = AdminServer(settings)
    with pytest.raises(CorruptCellFileError) as corrupt:
        await admin.start()
    await admin.stop()
    assert str(corrupt.value) == (
        f"{config} names no fs_root; it holds the cell's fs_root: restore it from a backup, "
        "or move it away to start with a new cell"
    )
    assert config.read_bytes() == contents
