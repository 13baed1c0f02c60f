"""The embedded cell as a cluster of processes: replicas, failures, admin restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import admin_pb2, admin_pb2_grpc, lm_pb2, lm_pb2_grpc

from gateway.cell import CellSettings, EmbeddedCell
from tests._grpc import aio_channel
from tests._stacks import stopped
from tests.integration._cell_fixtures import (
    CELL,
    SEED_LM,
    TEST_LM,
    addresses,
    admin_stub,
    eventually,
    fast_settings,
    publish,
)


async def test_publish_two_replicas_loads_on_both(embedded_cell: EmbeddedCell) -> None:
    async with admin_stub(embedded_cell.admin_address) as admin:
        model_id = await publish(admin, "lm", replicas=2)

        listed = (await admin.List(admin_pb2.ListRequest(model_id=model_id))).published_models[0]
        assert sorted(listed.modelet_addresses) == sorted(
            s.address for s in embedded_cell.model_servers
        )
        assert list(listed.model.method_names) == [
            "lm.embed",
            "lm.generate",
            "lm.generate_stream",
            "lm.gradient",
            "lm.score",
        ]
        for address in listed.modelet_addresses:
            async with aio_channel(address) as channel:
                reply = await lm_pb2_grpc.LMServiceStub(channel).Generate(
                    lm_pb2.GenerateRequest(model_key=model_id, text="hello there"), timeout=5
                )
            assert [t.text for t in reply.texts] == ["hello there"]


async def test_a_clean_stop_logs_no_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The model servers stopped first while the admin still polled them: each clean stop
    # logged every model server as "stopped answering; dropped it", a WARNING.
    async with EmbeddedCell(fast_settings(tmp_path), log_format="json") as cell:
        async with admin_stub(cell.admin_address) as admin:
            await publish(admin, "lm", replicas=2)
        await asyncio.sleep(0.5)  # a few of the admin's polls (every 0.2 s)
        running = _records(capfd)
    assert any(r["message"].startswith("joined admin") for r in running)  # the logs are read
    assert [r for r in _records(capfd) if r["level"] not in ("DEBUG", "INFO")] == []


def _records(capfd: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    """The JSON log records the cell's servers wrote to this process's stderr since the last
    read."""
    return [json.loads(line) for line in capfd.readouterr().err.splitlines() if line]


async def test_killed_model_server_replica_moves_to_spare(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, num_model_servers=3)
    async with (
        EmbeddedCell(settings, log_level="WARNING") as cell,
        admin_stub(cell.admin_address) as admin,
    ):
        model_id = await publish(admin, "lm", replicas=2)
        serving = await addresses(admin, model_id)
        victim = next(s for s in cell.model_servers if s.address == serving[0])
        spare = next(s for s in cell.model_servers if s.address not in serving)

        victim.kill()

        async def moved() -> bool:
            return sorted(await addresses(admin, model_id)) == sorted([serving[1], spare.address])

        await eventually(moved, timeout=10)
        await admin.WaitForReady(
            admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=2), timeout=5
        )


async def test_admin_kill9_restart_keeps_models_and_serving(embedded_cell: EmbeddedCell) -> None:
    async with admin_stub(embedded_cell.admin_address) as admin:
        lm_id = await publish(admin, "lm", replicas=2)
        seed_id = await publish(admin, "seed", model_path=SEED_LM, replicas=1)
        before = {m: sorted(await addresses(admin, m)) for m in (lm_id, seed_id)}
    old_pid = embedded_cell.admin_pid
    data = aio_channel(before[lm_id][0])
    lm = lm_pb2_grpc.LMServiceStub(data)

    # Clients keep generating on the model servers while the admin is dead and restarting.
    async def generate_all_along() -> int:
        count = 0
        while not restarted.is_set():
            reply = await lm.Generate(lm_pb2.GenerateRequest(model_key=lm_id, text="hi"), timeout=5)
            assert reply.texts[0].text == "hi"
            count += 1
            await asyncio.sleep(0.02)
        return count

    restarted = asyncio.Event()
    generating = asyncio.create_task(generate_all_along())
    await embedded_cell.restart_admin(kill=True)
    restarted.set()
    # Every call answered (each asserts its reply); a restart takes a few tenths of a second
    # (9 calls on a fast machine), so a handful proves calls went on while it happened.
    assert await generating >= 3
    await data.close()
    assert embedded_cell.admin_pid != old_pid

    async with admin_stub(embedded_cell.admin_address) as admin:
        listed = await admin.List(admin_pb2.ListRequest())
        assert sorted(m.model.model_id for m in listed.published_models) == [lm_id, seed_id]
        # The servers that had the models when the admin died still have them: no reloading.
        for model_id, served_by in before.items():
            assert sorted(await addresses(admin, model_id)) == served_by
        await admin.WaitForReady(
            admin_pb2.WaitForReadyRequest(model_id=lm_id, num_replicas=2), timeout=5
        )
        await publish(admin, "after", replicas=1)


def _slow_rejoin(tmp_path: Path) -> CellSettings:
    """Fast settings, but model servers re-join a restarted admin only after up to 2 s (their
    heartbeat), as they take up to 5 s with the defaults: a change made at the admin in
    between happens while it does not know them."""
    return dataclasses.replace(
        fast_settings(tmp_path), location_watch_interval=2.0, server_dead_after=2.0
    )


async def _generate(address: str, model_id: str) -> str | grpc.StatusCode:
    """The text a model server answers for the model, or the code it fails with."""
    async with aio_channel(address) as channel:
        try:
            reply = await lm_pb2_grpc.LMServiceStub(channel).Generate(
                lm_pb2.GenerateRequest(model_key=model_id, text="echo"), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return str(reply.texts[0].text)


async def test_model_servers_rejoin_only_an_admin_that_did_not_know_them(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The admin polls each server every 20 ms; each server sends a heartbeat Join every
    # 50 ms. Before, a poll that landed during a heartbeat was taken for the admin dialling
    # back to take the server in: it logged "joined admin ... (the admin restarted)" and
    # counted a join with no restart (with `saxgw up`'s timings, 10 s after every start,
    # and every 10 s after a SIGSTOP and SIGCONT of a model server).
    # A server stopped longer than server_dead_after is dropped and joins again, rightly: 5 s,
    # not fast_settings' 1 s, so that the 0.3 s stop below, which a loaded host stretches, is
    # far from it (one stretched past 1 s would fail the test with a rightful rejoin).
    settings = dataclasses.replace(
        fast_settings(tmp_path),
        poll_interval=0.02,
        location_watch_interval=0.05,
        server_dead_after=5.0,
    )

    def joins() -> list[str]:  # why each server logged that it joined, in order
        logged = capfd.readouterr().err.splitlines()
        return [
            line.split(" (", 1)[1].rsplit(") as ", 1)[0]
            for line in logged
            if "joined admin" in line
        ]

    async with EmbeddedCell(settings, log_level="INFO") as cell:
        await asyncio.sleep(2.0)
        with stopped(cell.model_servers[0].pid):  # for less than server_dead_after (5 s)
            await asyncio.sleep(0.3)
        await asyncio.sleep(2.0)
        assert [server.joins for server in cell.model_servers] == [1, 1]
        assert joins() == ["first join", "first join"]
        await cell.restart_admin(kill=True)  # returns once each server joined the new admin
        await asyncio.sleep(1.0)
        assert [server.joins for server in cell.model_servers] == [2, 2]
        # Refused while the admin was away, or taken in by the new one at a heartbeat.
        rejoined = joins()
        assert len(rejoined) == 2, rejoined
        assert set(rejoined) <= {
            "the last join failed",
            "it did not know this server: it restarted, or had dropped it",
        }


async def test_a_model_unpublished_before_its_servers_rejoin_is_unloaded_when_they_do(
    tmp_path: Path,
) -> None:
    # The restarted admin does not know the servers yet, so it cannot unload the model when
    # it is unpublished. They kept it for good, and answered calls sent to them with it.
    async with EmbeddedCell(_slow_rejoin(tmp_path), log_level="WARNING") as cell:
        async with admin_stub(cell.admin_address) as admin:
            model_id = await publish(admin, "gone", replicas=2)
        joins = [server.joins for server in cell.model_servers]
        await cell.restart_admin(kill=True, wait_for_joins=False)
        async with admin_stub(cell.admin_address) as admin:
            await admin.Unpublish(admin_pb2.UnpublishRequest(model_id=model_id), timeout=5)
        for server, count in zip(cell.model_servers, joins, strict=True):
            await server.wait_for_joins(count + 1, timeout=10)

        async def dropped() -> bool:
            answers = [await _generate(s.address, model_id) for s in cell.model_servers]
            return answers == [grpc.StatusCode.NOT_FOUND] * 2

        await eventually(dropped, timeout=5)


@pytest.mark.parametrize("change", ["republish", "update"])
async def test_a_model_changed_before_its_servers_rejoin_serves_its_new_definition(
    tmp_path: Path, change: str
) -> None:
    # The servers re-joined with the old definition loaded, and the admin took their copies
    # as replicas of the new one: every call answered "old words" for good. Their copies
    # unloaded, an updated model then got no replica until the restarted admin's wait for
    # re-joining servers ended (adopt_wait, 30 s by default), though it has nothing left to
    # take over from them: long here, so that only a model placed at once is ready in time.
    settings = dataclasses.replace(_slow_rejoin(tmp_path), adopt_wait=60.0)
    async with EmbeddedCell(settings, log_level="WARNING") as cell:
        async with admin_stub(cell.admin_address) as admin:
            model_id = await publish(admin, "changed", replicas=2, overrides={"text": "old words"})
        await cell.restart_admin(kill=True, wait_for_joins=False)
        new = admin_pb2.Model(
            model_id=model_id,
            model_path=TEST_LM,
            checkpoint_path="None",
            requested_num_replicas=2,
            overrides={"text": "new words"},
        )
        async with admin_stub(cell.admin_address) as admin:
            if change == "update":
                await admin.Update(admin_pb2.UpdateRequest(model=new), timeout=5)
            else:
                await admin.Unpublish(admin_pb2.UnpublishRequest(model_id=model_id), timeout=5)
                await _publish_when_unpublished(admin, new)
            await admin.WaitForReady(
                admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=2), timeout=10
            )
            served_by = await addresses(admin, model_id)
        assert sorted(served_by) == sorted(s.address for s in cell.model_servers)
        assert [await _generate(a, model_id) for a in served_by] == ["new words"] * 2


async def _publish_when_unpublished(
    admin: admin_pb2_grpc.AdminAsyncStub, model: admin_pb2.Model
) -> None:
    """Publishes ``model``, again while the admin answers that its unpublish is under way."""
    for _ in range(100):
        try:
            await admin.Publish(admin_pb2.PublishRequest(model=model), timeout=5)
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.05)
    pytest.fail(f"{model.model_id} stayed 'being unpublished'")


async def test_stream_cancellation_is_seen_by_the_model_server(
    embedded_cell: EmbeddedCell,
) -> None:
    async with admin_stub(embedded_cell.admin_address) as admin:
        model_id = await publish(
            admin, "slow", overrides={"text": "one two three", "length": "200", "delay_ms": "50"}
        )
        (address,) = await addresses(admin, model_id)
    server = next(s for s in embedded_cell.model_servers if s.address == address)
    async with aio_channel(address) as channel:
        call = lm_pb2_grpc.LMServiceStub(channel).GenerateStream(
            lm_pb2.GenerateRequest(model_key=model_id, text="x")
        )
        texts = []
        for _ in range(3):
            item = await call.read()
            assert isinstance(item, lm_pb2.GenerateStreamResponse)  # not grpc.aio.EOF
            texts.append(item.items[0].text)
        assert texts == ["one", " two", " three"]
        call.cancel()
        seen = await server.wait_for_cancellation(model_id, timeout=5)
    # A model server that ignored the cancellation would produce all 200 tokens (10 s); how
    # soon it stops is a speed figure, not a test (a loaded machine stretches it).
    assert 3 <= seen.tokens_sent < 200
    assert CELL in seen.model_key
