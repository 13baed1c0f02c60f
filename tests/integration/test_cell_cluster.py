"""The embedded cell as a cluster of processes: replicas, failures, admin restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from saxml.protobuf import admin_pb2, lm_pb2, lm_pb2_grpc

from gateway.cell import EmbeddedCell
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import (
    CELL,
    SEED_LM,
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
