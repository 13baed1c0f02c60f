"""The client never serves a stale answer, and reports an unreachable admin in seconds.

Issue #11: a NOT_FOUND was kept for 5 s, so a model published again (by this client or any
other) answered "is not published"; an admin that did not answer held calls for their whole
deadline and ended in DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.cell import AdminServer, CellSettings
from gateway.client import (
    CallOptions,
    Client,
    ClientSettings,
    DeadlineExceededError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
    _locations,
    _router,
)
from gateway.common import slottable
from gateway.common.names import outside_cell, parse_model_id
from gateway.common.rpc import Context
from gateway.launch.processes import free_port
from tests._approx import approx
from tests.integration._cell_fixtures import (
    admin_stub,
    eventually,
    refusing_every_call,
    stand_in_admin,
    stand_in_server,
)
from tests.integration._client_fixtures import CELL, TEST_LM, RunningCell, publish_ready

T = CallOptions(timeout=20)
# Far above the 5 s an unreachable admin is given, far below the 60 s deadline of the calls:
# a call that waited out its deadline (the bug) fails the test by timing out here.
BOUND_S = 40.0


async def test_publish_generate_unpublish_loop_never_sees_a_stale_not_found(
    client: Client,
) -> None:
    model_id = f"{CELL}/loop"
    for _ in range(50):
        await client.publish(model_id, TEST_LM, "None", 1)
        assert await client.lm_generate(model_id, "again", T) == [("again", approx(-0.1))]
        await client.unpublish(model_id)
        with pytest.raises(NotFoundError):
            await client.lm_generate(model_id, "gone", T)


async def test_two_clients_loop_sees_each_others_changes(cell: RunningCell, client: Client) -> None:
    model_id = f"{CELL}/shared"
    async with Client(ClientSettings(sax_root=cell.sax_root)) as other:
        for _ in range(20):
            await client.publish(model_id, TEST_LM, "None", 1)
            assert await other.lm_generate(model_id, "seen", T) == [("seen", approx(-0.1))]
            await client.unpublish(model_id)


async def test_a_model_published_by_another_client_is_found_at_once(
    cell: RunningCell, client: Client
) -> None:
    model_id = f"{CELL}/elsewhere"
    with pytest.raises(NotFoundError):
        await client.lm_generate(model_id, "early", T)
    async with Client(ClientSettings(sax_root=cell.sax_root)) as publisher:
        await publish_ready(publisher, "elsewhere", replicas=1)
    assert await client.lm_generate(model_id, "now", T) == [("now", approx(-0.1))]


async def test_a_watch_logs_its_end_only_if_it_followed_a_model(
    cell: RunningCell, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.client._locations")
    # Calls naming a model that never was: the caller's error, a line each would flood the log.
    for _ in range(5):
        with pytest.raises(NotFoundError):
            await client.lm_generate(f"{CELL}/never-was", "q", T)
    model_id = await publish_ready(client, "followed", replicas=1)
    assert await client.lm_generate(model_id, "served", T) == [("served", approx(-0.1))]
    # Unpublished by another client: this one's watch is what learns it (its own unpublish
    # forgets the model at once).
    async with Client(ClientSettings(sax_root=cell.sax_root)) as other:
        await other.unpublish(model_id)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "gateway.client._locations"]

    async def logged() -> bool:
        return bool(lines())

    await eventually(logged)
    assert lines() == [f"watch of {model_id} ended: model {model_id} is not published: NotFound"]


async def test_a_watch_cut_by_a_cancellation_no_one_asked_for_does_not_strand_its_calls(
    cell: RunningCell, monkeypatch: pytest.MonkeyPatch
) -> None:
    # grpc.aio raises CancelledError in a call whose channel was closed under it. A watch
    # that ended so (not cancelled by the client: no forget, no close) left the calls
    # waiting on its table asleep until their deadline: its `except Exception` missed it.
    real = _locations.watch
    cut: list[str] = []

    async def cut_once(table: Any, *rest: Any) -> None:
        if not cut:
            cut.append(table.model_id)
            await asyncio.sleep(0.2)  # calls are waiting on the table by then
            raise asyncio.CancelledError  # as grpc.aio reports a channel closed under a call
        await real(table, *rest)

    async with Client(ClientSettings(sax_root=cell.sax_root)) as publisher:
        model_id = await publish_ready(publisher, "cut", replicas=1)
    monkeypatch.setattr(_router, "watch", cut_once)
    async with Client(ClientSettings(sax_root=cell.sax_root)) as client:
        calls = [client.lm_generate(model_id, "q", CallOptions(timeout=30)) for _ in range(3)]
        answers = await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert cut == [model_id]
    assert answers == [[("q", approx(-0.1))]] * 3


async def test_update_forgets_nothing_it_should_keep(client: Client) -> None:
    model_id = await publish_ready(client, "kept", replicas=1)
    await client.update(model_id, num_replicas=1)
    assert await client.lm_generate(model_id, "still", T) == [("still", approx(-0.1))]


async def test_unreachable_admin_is_unavailable_in_seconds_naming_cell_and_address(
    cell: RunningCell,
) -> None:
    settings = ClientSettings(sax_root=cell.sax_root, admin_timeout=60.0)
    async with Client(settings) as client:
        model_id = await publish_ready(client, "known", replicas=1)
        assert await client.lm_generate(model_id, "before", T)
        address = cell.admin_address
        await cell.admin.stop(grace=0)  # location.proto now names a port nobody listens on
        with pytest.raises(UnavailableError) as listing:
            await asyncio.wait_for(client.list_all(CELL), BOUND_S)
        assert CELL in listing.value.message and address in listing.value.message
        # A model nobody asked for yet needs the admin: UNAVAILABLE too, not DEADLINE_EXCEEDED.
        unknown = CallOptions(timeout=60.0)
        with pytest.raises(UnavailableError) as generating:
            await asyncio.wait_for(client.lm_generate(f"{CELL}/unknown", "x", unknown), BOUND_S)
        assert CELL in generating.value.message and address in generating.value.message
        # Replicas already known keep serving meanwhile.
        assert await client.lm_generate(model_id, "during", T) == [("during", approx(-0.1))]


async def test_names_made_up_while_the_admin_is_away_are_bounded(
    cell: RunningCell, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each model name a caller made up while the admin did not answer kept a table and a
    # watch polling each second, for as long as the outage lasted: without bound.
    monkeypatch.setattr(_router, "MAX_UNANSWERED", 3)
    settings = ClientSettings(sax_root=cell.sax_root, admin_unreachable_after=0.2)
    async with Client(settings) as client:
        model_id = await publish_ready(client, "bounded", replicas=1)
        assert await client.lm_generate(model_id, "before", T)
        await cell.admin.stop(grace=0)
        for i in range(3):
            with pytest.raises(UnavailableError) as waited:
                await asyncio.wait_for(client.lm_generate(f"{CELL}/made{i}", "x", T), BOUND_S)
            assert "unreachable" in waited.value.message
        with pytest.raises(UnavailableError) as refused:
            await asyncio.wait_for(client.lm_generate(f"{CELL}/made3", "x", T), 0.1)
        assert refused.value.message == (
            f"3 models of cell {CELL} wait for their admin's first answer, which does not "
            "come; retry later"
        )
        # Models it knows keep serving.
        assert await client.lm_generate(model_id, "during", T) == [("during", approx(-0.1))]


async def test_cells_a_caller_made_up_are_not_kept(cell: RunningCell) -> None:
    # Each cell name a call made up (a 404) kept its cell's watch record, about 1 KB, for good:
    # 40,000 such calls took a gateway process from 64 to 106 MB.
    settings = ClientSettings(sax_root=cell.sax_root)
    async with Client(settings) as client:
        model_id = await publish_ready(client, "kept", replicas=1)
        assert await client.lm_generate(model_id, "x", T)
        for i in range(20):
            with pytest.raises(NotFoundError):
                await asyncio.wait_for(client.lm_generate(f"/sax/made{i}/m", "x", T), BOUND_S)
        await asyncio.sleep(0)  # the watches' own endings
        assert list(client._router._watches) == [parse_model_id(model_id).cell]


async def test_the_unreachable_limit_is_configurable(tmp_path: Path) -> None:
    cell_dir = tmp_path / "sax" / "test"
    cell_dir.mkdir(parents=True)
    stale = f"127.0.0.1:{free_port()}"  # a location.proto naming an admin that is gone
    (cell_dir / "location.proto").write_bytes(
        admin_pb2.Location(location=stale).SerializeToString()
    )
    settings = ClientSettings(
        sax_root=str(tmp_path), admin_timeout=60.0, admin_unreachable_after=0.2
    )
    async with Client(settings) as client:
        with pytest.raises(UnavailableError, match="is unreachable") as caught:
            await asyncio.wait_for(client.stats(CELL), BOUND_S)
    assert f"cell {CELL} at {stale}" in caught.value.message


async def test_no_ready_replica_waits_then_says_how_many_are_ready(client: Client) -> None:
    model_id = f"{CELL}/idle"
    await client.publish(model_id, TEST_LM, "None", 0)
    with pytest.raises(DeadlineExceededError, match=r"\(0 replicas are ready\)"):
        await client.lm_generate(model_id, "x", CallOptions(timeout=0.5))


async def test_a_model_with_no_replica_requested_fails_at_once(cell: RunningCell) -> None:
    # Published with 0 replicas, a model gets none until someone asks for some: a gateway's
    # call waited for its whole deadline (504 after 60 s; 3 minutes with the OpenAI SDKs'
    # retries). A model whose replica is requested but not placed is still waited for.
    settings = ClientSettings(sax_root=cell.sax_root, fail_unrequested=True)
    async with Client(settings) as client:
        unplaced = f"{CELL}/unplaced"  # no model server lists its path: one may join
        await client.publish(unplaced, "sax_gateway.testing.NoServerHasIt", "None", 1)
        with pytest.raises(DeadlineExceededError, match=r"\(0 replicas are ready\)"):
            await client.lm_generate(unplaced, "x", CallOptions(timeout=0.5))
        model_id = f"{CELL}/none"
        await client.publish(model_id, TEST_LM, "None", 0)
        refusal = (
            f"{model_id} has no replica to serve it: it is published with 0 replicas (an update "
            "of its replicas makes it serve)"
        )
        loop = asyncio.get_running_loop()
        for _ in range(2):  # the first asks the admin; the next, within a second, knows
            started = loop.time()
            with pytest.raises(FailedPreconditionError) as refused:
                await client.lm_generate(model_id, "x", CallOptions(timeout=30))
            assert refused.value.message == refusal
            # At once (an admin read at most); the bad waited for the call's 30 s. 10 s, not
            # 2 s: a loaded host's pauses, far from both.
            assert loop.time() - started < 10.0
        stream = client.lm_generate_stream(model_id, "x", CallOptions(timeout=30))
        with pytest.raises(FailedPreconditionError, match="published with 0 replicas"):
            await anext(aiter(stream))
        # Asked for a replica by another client (this one learns of it from the admin: once the
        # replica serves, or the admin's answer is a second old), it serves.
        async with Client(ClientSettings(sax_root=cell.sax_root)) as other:
            await other.update(model_id, num_replicas=1)

        async def serves() -> bool:
            with contextlib.suppress(FailedPreconditionError):
                return await client.lm_generate(model_id, "now", T) == [("now", approx(-0.1))]
            return False

        await eventually(serves, timeout=5.0)


async def test_a_call_waiting_for_a_replica_fails_once_the_model_drops_to_none_elsewhere(
    cell: RunningCell,
) -> None:
    # Updated to 0 replicas by another stack (or saxutil) while a call waited for a replica,
    # or within a second of this client's last read: nothing woke the call (its model's
    # address set stayed empty), and it waited out its whole deadline, a 504.
    settings = ClientSettings(sax_root=cell.sax_root, fail_unrequested=True)
    async with Client(settings) as waiting, Client(settings) as elsewhere:
        model_id = f"{CELL}/dropped"
        await elsewhere.publish(model_id, "sax_gateway.testing.NoServerHasIt", "None", 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = asyncio.ensure_future(waiting.lm_generate(model_id, "x", CallOptions(timeout=30)))
        await asyncio.sleep(0.3)  # its read of the model found a replica requested
        assert not call.done()
        await elsewhere.update(model_id, num_replicas=0)
        with pytest.raises(FailedPreconditionError, match="published with 0 replicas"):
            await call
        # Within a second or so of the change (10 s: a loaded host's pauses), not the 30 s.
        assert loop.time() - started < 10.0


async def test_replicas_asked_for_through_one_process_of_a_stack_serve_at_once_in_the_others(
    cell: RunningCell, tmp_path: Path
) -> None:
    # Two gateway processes of one stack (`--workers 2`): a client each, sharing a table.
    # The second had heard "0 replicas requested" from the admin; the first then gave the
    # model a replica (an update, or an unpublish and a new publish), and replied. The
    # second's calls were refused "published with 0 replicas" for up to a second after,
    # though the change was made through its own stack, which tells its processes of
    # changes before it replies (docs/security.md).
    path = str(tmp_path / "slots")
    slottable.create(path, workers=2)
    boards = [slottable.SlotTable(path, worker) for worker in (0, 1)]
    settings = ClientSettings(sax_root=cell.sax_root, fail_unrequested=True)
    try:
        async with Client(settings) as changer, Client(settings) as other:
            for client, board in zip((changer, other), boards, strict=True):
                client.share_findings(board)
            model_id = f"{CELL}/asked-elsewhere"
            await changer.publish(model_id, TEST_LM, "None", 0)

            async def changed_by_an_update() -> None:
                await changer.update(model_id, num_replicas=1)

            async def published_again() -> None:
                await changer.unpublish(model_id)
                await changer.publish(model_id, TEST_LM, "None", 1)

            for change, back_to_none in (
                (changed_by_an_update, partial(changer.update, model_id, num_replicas=0)),
                (published_again, None),
            ):
                with pytest.raises(FailedPreconditionError, match="published with 0 replicas"):
                    await other.lm_generate(model_id, "x", T)
                await change()
                # At once: the call waits for the replica to load, as any call does.
                assert await other.lm_generate(model_id, "now", T) == [("now", approx(-0.1))]
                if back_to_none is not None:
                    await back_to_none()
                    await eventually(partial(_refused, other, model_id), timeout=10.0)
    finally:
        for board in boards:
            board.close()


async def _refused(client: Client, model_id: str) -> bool:
    try:
        await client.lm_generate(model_id, "x", CallOptions(timeout=5))
    except FailedPreconditionError:
        return True
    return False


async def test_state_keeps_method_names_after_the_model_served(
    cell: RunningCell, client: Client
) -> None:
    model_id = await publish_ready(client, "methods", replicas=1)

    # Ready can come from the Load call's answer, before the admin's next status poll has
    # seen the model's methods: wait for that poll (generously, for a loaded machine).
    async def methods_seen() -> bool:
        return "lm.generate" in (await client.list_detail(model_id)).method_names

    await eventually(methods_seen, timeout=30)
    detail = await client.list_detail(model_id)
    state_path = cell.settings.effective_fs_root + "/sax/test/state.proto"
    for _ in range(600):  # up to 30 s
        with open(state_path, "rb") as file:
            state = admin_pb2.State.FromString(file.read())
        saved = {m.model_id: list(m.method_names) for m in state.models}
        if saved.get(model_id):
            break
        await asyncio.sleep(0.05)
    assert saved[model_id] == sorted(detail.method_names)


async def test_a_half_written_location_is_retried_and_a_garbled_one_is_unavailable(
    cell: RunningCell,
) -> None:
    # Upstream's admin writes location.proto in place (not atomically), so a reader can see it
    # cut short while an admin restarts; that was FAILED_PRECONDITION (400) at once.
    location = Path(cell.sax_root) / "sax" / "test" / "location.proto"
    whole = location.read_bytes()
    location.write_bytes(whole[:-3])
    settings = ClientSettings(sax_root=cell.sax_root, admin_unreachable_after=20.0)
    async with Client(settings) as client:
        listing = asyncio.create_task(client.list_all(CELL, timeout=BOUND_S))
        await asyncio.sleep(0.3)
        location.write_bytes(whole)
        assert await listing == []
    location.write_bytes(b"\xff not a sax.Location")
    try:
        settings = ClientSettings(sax_root=cell.sax_root, admin_unreachable_after=0.2)
        async with Client(settings) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.list_all(CELL, timeout=BOUND_S)
        # Where SAX_ROOT is on this server is the operator's, in the log only.
        assert caught.value.message == (
            f"the admin server of cell {CELL} (no address) is unreachable: its location.proto "
            "does not parse (being rewritten, or corrupt: restarting the cell's admin server "
            "writes it anew)"
        )
        # grpc dials it all the same: port 99999 is 34463 to it, another server's.
        location.write_bytes(admin_pb2.Location(location="127.0.0.1:99999").SerializeToString())
        async with Client(settings) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.list_all(CELL, timeout=BOUND_S)
        assert caught.value.message == (
            f"the admin server of cell {CELL} (no address) is unreachable: its location.proto "
            "names '127.0.0.1:99999' for its admin server, not HOST:PORT"
        )
    finally:
        location.write_bytes(whole)


def _root_naming(root: Path, address: str) -> ClientSettings:
    """Settings of a SAX_ROOT at ``root`` whose cell's location.proto names ``address``."""
    cell_dir = root / "sax" / "test"
    cell_dir.mkdir(parents=True)
    (cell_dir / "location.proto").write_bytes(
        admin_pb2.Location(location=address).SerializeToString()
    )
    return ClientSettings(sax_root=str(root), admin_unreachable_after=0.2)


async def test_a_location_naming_a_server_that_is_no_admin_is_unavailable(tmp_path: Path) -> None:
    # A stale location.proto whose address another gRPC server took over (a model server, a
    # reused pod IP) answered every admin call UNIMPLEMENTED "Method not found!" (501), as if
    # the gateway lacked the call; it is an admin that is not there.
    def add_health(server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)

    async with stand_in_server(add_health) as other:
        settings = _root_naming(tmp_path, other)
        async with Client(settings) as client:
            with pytest.raises(UnavailableError) as caught:
                await client.list_all(CELL, timeout=BOUND_S)
            # A change too, at once: no admin had it (it waited out its deadline, 504, "...
            # did not answer it once it was sent (it went away or hangs), so it may have been
            # made").
            with pytest.raises(UnavailableError) as changed:
                publishing = client.publish(f"{CELL}/m", TEST_LM, "None", 0, timeout=BOUND_S)
                await asyncio.wait_for(publishing, BOUND_S)
    assert f"cell {CELL} at {other} is unreachable" in caught.value.message
    assert "does not serve sax.Admin" in caught.value.message
    assert changed.value.message == caught.value.message


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED]
)
async def test_a_location_naming_a_server_that_asks_for_credentials_is_unavailable(
    tmp_path: Path, code: grpc.StatusCode
) -> None:
    # A stale location.proto whose address a gRPC server behind an auth proxy took over:
    # its refusal reached every caller as theirs (401 or 403, and saxgw's hint to set an API
    # key), for listings, changes and data calls (the model's ACL read) alike. Sax admins
    # ask for no credentials: this is an admin that is not there.
    async with stand_in_server(refusing_every_call(code)) as other:
        settings = _root_naming(tmp_path, other)
        async with Client(settings) as client:
            for call in (
                lambda: client.list_all(CELL, timeout=BOUND_S),
                lambda: client.publish(f"{CELL}/m", TEST_LM, "None", 0, timeout=BOUND_S),
                lambda: client.lm_generate(f"{CELL}/m", "hi", CallOptions(timeout=BOUND_S)),
            ):
                with pytest.raises(UnavailableError) as caught:
                    await asyncio.wait_for(call(), BOUND_S)
                assert caught.value.message.endswith(
                    f"the admin server of cell {CELL} at {other} is unreachable: it is no Sax "
                    f"admin: it asks for credentials ({code.name}: no credentials)"
                ), caught.value.message


async def test_a_location_naming_another_cells_admin_is_unavailable(tmp_path: Path) -> None:
    # A stale location.proto whose address the admin of another cell took over (two
    # `saxgw up` of two cells on one SAX_ROOT, both on admin port 10000; a reused pod IP):
    # that admin's models were listed as this cell's (and twice by /v1/models), a publish
    # was INVALID_ARGUMENT (400) "must be within Sax cell '/sax/other'", and calls to a
    # model of this cell were NOT_FOUND (404) "is not published". It is an admin that is
    # not there, as an address no admin serves is.
    other = AdminServer(CellSettings(sax_root=str(tmp_path), cell="/sax/other"))
    await other.start()
    try:
        async with admin_stub(other.address) as stub:
            model = admin_pb2.Model(
                model_id="/sax/other/om", model_path=TEST_LM, checkpoint_path="None"
            )
            await stub.Publish(admin_pb2.PublishRequest(model=model), timeout=5)
            cell_dir = tmp_path / "sax" / "test"
            cell_dir.mkdir(parents=True)
            location = admin_pb2.Location(location=other.address).SerializeToString()
            (cell_dir / "location.proto").write_bytes(location)
            settings = ClientSettings(sax_root=str(tmp_path), admin_unreachable_after=0.2)
            async with Client(settings) as client:
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: client.list_all(CELL, timeout=BOUND_S),
                    lambda: client.list_detail(f"{CELL}/lm", timeout=BOUND_S),
                    lambda: client.publish(f"{CELL}/new", TEST_LM, "None", 1, timeout=BOUND_S),
                    lambda: client.lm_generate(f"{CELL}/lm", "q", T),
                ]
                for call in calls:
                    with pytest.raises(UnavailableError) as caught:
                        await call()
                    assert f"cell {CELL} at {other.address} is unreachable" in (
                        caught.value.message
                    ), caught.value.message
                    assert "the admin of cell /sax/other" in caught.value.message
            listed = await stub.List(admin_pb2.ListRequest(), timeout=5)
        assert [m.model.model_id for m in listed.published_models] == ["/sax/other/om"]
    finally:
        await other.stop(grace=0)


class _OtherCellsAdmin(admin_pb2_grpc.AdminServicer):
    """The admin of /sax/other, slow (``probe_s``) to refuse a List of a model of another
    cell, which is how a client checks the cell of an admin whose WatchLoc said NOT_FOUND."""

    def __init__(self, probe_s: float) -> None:
        self.probe_s = probe_s

    async def Join(
        self, request: admin_pb2.JoinRequest, context: Context
    ) -> admin_pb2.JoinResponse:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not this cell: InvalidArgument")
        raise AssertionError("unreachable")

    async def WatchLoc(
        self, request: admin_pb2.WatchLocRequest, context: Context
    ) -> admin_pb2.WatchLocResponse:
        await context.abort(
            grpc.StatusCode.NOT_FOUND, f"model {request.model_id} is not published: NotFound"
        )
        raise AssertionError("unreachable")

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        if request.model_id:
            await asyncio.sleep(self.probe_s)
            refusal = outside_cell(request.model_id, "/sax/other")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{refusal}: InvalidArgument")
        other = admin_pb2.Model(
            model_id="/sax/other/om", model_path=TEST_LM, checkpoint_path="None"
        )
        return admin_pb2.ListResponse(published_models=[admin_pb2.PublishedModel(model=other)])


async def test_a_model_keeps_its_replicas_when_its_location_names_another_cells_admin(
    cell: RunningCell, client: Client
) -> None:
    # The admin gone and location.proto naming another cell's admin (a stale file, a reused
    # pod IP), with listings running: each listing's refusal dropped the connection, and with
    # it the List that checked which cell answered the watch's NOT_FOUND. grpc.aio reports
    # that as CancelledError, which ended the watch: the model's replicas (still serving) were
    # forgotten, calls that waited for the table waited out their deadline (504 "0 replicas
    # are ready"), and every later one failed 503, until the cell's admin came back.
    model = await publish_ready(client, "kept", replicas=1)
    assert await client.lm_generate(model, "q", T) == [("q", -0.1)]
    admin = _OtherCellsAdmin(probe_s=0.3)  # type: ignore[abstract]
    async with stand_in_server(partial(admin_pb2_grpc.add_AdminServicer_to_server, admin)) as other:
        await cell.admin.stop(grace=0)
        location = admin_pb2.Location(location=other).SerializeToString()
        (Path(cell.sax_root) / "sax" / "test" / "location.proto").write_bytes(location)

        async def listings() -> None:
            while True:
                with contextlib.suppress(UnavailableError):
                    await client.list_all(CELL, timeout=1.0)
                await asyncio.sleep(0.02)

        lister = asyncio.create_task(listings())
        try:
            for _ in range(20):
                answer = await client.lm_generate(model, "q", CallOptions(timeout=5))
                assert answer == [("q", -0.1)]
                await asyncio.sleep(0.1)
        finally:
            lister.cancel()
            await asyncio.gather(lister, return_exceptions=True)


async def test_an_unreachable_admin_is_announced_once_not_at_every_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each retry reconnects, and each reconnection logged "admin of /sax/test is at ..." at
    # INFO: about thirty lines in the 3 s an admin was away.
    cell_dir = tmp_path / "sax" / "test"
    cell_dir.mkdir(parents=True)
    away = f"127.0.0.1:{free_port()}"  # nothing listens there
    (cell_dir / "location.proto").write_bytes(admin_pb2.Location(location=away).SerializeToString())
    settings = ClientSettings(sax_root=str(tmp_path), admin_unreachable_after=1.0)
    caplog.set_level(logging.DEBUG, logger="gateway.client")
    async with Client(settings) as client:
        for _ in range(2):
            with pytest.raises(UnavailableError, match="is unreachable"):
                await client.list_all(CELL, timeout=BOUND_S)
    retries = [r for r in caplog.records if "; retrying in " in r.getMessage()]
    assert len(retries) >= 2  # it did reconnect and retry
    announced = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert announced.count(f"admin of {CELL} is at {away}") == 1


class _EmptyAdmin(admin_pb2_grpc.AdminServicer):
    """An admin of a cell with no models: it answers List."""

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        return admin_pb2.ListResponse()


async def test_calls_in_an_admin_outage_that_a_call_found_fail_at_once(tmp_path: Path) -> None:
    # Each call gave the admin the whole unreachable window again: in a cell outage, every
    # listing and every data call whose model's ACLs a gateway had not read (an admin List)
    # held its caller 5 s before its 503, and the OpenAI SDKs' two retries made that 18 s.
    away = f"127.0.0.1:{free_port()}"  # nothing listens there
    # A window of 3 s, not 1 s: a later call fails at once (milliseconds; a loaded host's
    # pauses) where the bad gave each the window again, so the bound of 1.5 s below sits
    # far from both (0.5 s against a 1 s window before).
    settings = replace(_root_naming(tmp_path, away), admin_unreachable_after=3.0)
    unreachable = f"the admin server of cell {CELL} at {away} is unreachable: "
    loop = asyncio.get_running_loop()
    async with Client(settings) as client:
        started = loop.time()
        with pytest.raises(UnavailableError, match=unreachable):
            await client.list_all(CELL, timeout=BOUND_S)
        assert loop.time() - started >= 3.0  # the first gives the admin its window
        calls: list[Callable[[], Awaitable[object]]] = [
            partial(client.list_all, CELL, timeout=BOUND_S),
            partial(client.list_detail, f"{CELL}/m", timeout=BOUND_S),
            partial(client.publish, f"{CELL}/m", TEST_LM, "None", 0, timeout=BOUND_S),
            # A model first called in the outage: its watch gave the admin its whole window
            # (or a shorter deadline ended it, 504 "0 replicas are ready").
            partial(client.lm_generate, f"{CELL}/first", "q", CallOptions(timeout=BOUND_S)),
            partial(client.lm_generate, f"{CELL}/second", "q", CallOptions(timeout=2.0)),
        ]
        for call in calls:
            started = loop.time()
            with pytest.raises(UnavailableError, match=unreachable):
                await call()
            assert loop.time() - started < 1.5, call
        # Each still tries the admin: the first once it is back (here at the address a new
        # location.proto names) is answered.
        async with stand_in_admin(_EmptyAdmin(), str(tmp_path), CELL):  # type: ignore[abstract]
            assert await client.list_all(CELL, timeout=BOUND_S) == []


async def test_a_garbled_location_and_the_watch_it_fails_are_logged_once_not_per_attempt(
    cell: RunningCell, caplog: pytest.LogCaptureFixture
) -> None:
    # Every attempt of every admin call read the file again and logged "... is not a
    # sax.Location" at WARNING (225 lines in 25 s from 2 gateways with one model), and each
    # model's watch logged "watch of M: ... unreachable" every round (about every 1.2 s here).
    # The watches of a cell fail together: one line for them all, naming how many, not one
    # per model (an outage of a cell of 200 models was 200 WARNINGs when it began, 200 a
    # minute while it lasted and 200 INFOs when it ended).
    location = Path(cell.sax_root) / "sax" / "test" / "location.proto"
    whole = location.read_bytes()
    location.write_bytes(b"\xff not a sax.Location")
    caplog.set_level(logging.INFO, logger="gateway.client")
    model_ids = [f"{CELL}/garbled{i}" for i in range(3)]
    settings = ClientSettings(sax_root=cell.sax_root, admin_unreachable_after=0.2)

    async def generate(model_id: str) -> None:
        with pytest.raises(UnavailableError, match="does not parse"):
            await client.lm_generate(model_id, "x", T)

    try:
        async with Client(settings) as client:
            loop = asyncio.get_running_loop()
            until = loop.time() + 4.0
            while loop.time() < until:  # a continuous failure: calls, retries and watches
                with pytest.raises(UnavailableError, match="does not parse"):
                    await client.list_all(CELL, timeout=BOUND_S)
                await asyncio.gather(*map(generate, model_ids))
                await asyncio.sleep(0.2)
            location.write_bytes(whole)
            assert await client.list_all(CELL, timeout=BOUND_S) is not None
            ended = f"watching the models of {CELL} works again, after "

            async def answered() -> bool:
                return ended in caplog.text

            await eventually(answered)
    finally:
        location.write_bytes(whole)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    garbled = [m for m in lines if m.endswith("location.proto is not a sax.Location")]
    assert len(garbled) == 1, lines
    assert sum(m.startswith(f"parsing {garbled[0].split()[0]} works again") for m in lines) == 1
    watching = [m for m in lines if m.startswith("watch")]
    assert len(watching) == 2, lines
    assert watching[0].startswith(f"watching 3 models of {CELL}: the admin server of "), lines
    assert watching[1].startswith(ended), lines
