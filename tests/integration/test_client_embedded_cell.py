"""The client against the embedded cell run as separate processes (`EmbeddedCell`): what only
real processes show, a replica or the admin dying with SIGKILL under load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cell import EmbeddedCell
from gateway.client import CallOptions, Client, ClientSettings
from tests._approx import approx
from tests._stacks import stopped
from tests.integration._client_fixtures import (
    CELL,
    SEED_LM,
    TEST_LM,
    cell_settings,
    generate_load,
)


@pytest.fixture
async def cell_processes(tmp_path: Path) -> AsyncIterator[EmbeddedCell]:
    settings = cell_settings(str(tmp_path / "root"), num_model_servers=2)
    async with EmbeddedCell(settings, log_level="WARNING") as cell:
        yield cell


async def test_kill_one_replica_and_the_admin_under_load(cell_processes: EmbeddedCell) -> None:
    cell = cell_processes
    async with Client(ClientSettings(sax_root=cell.sax_root)) as client:
        model_id = f"{CELL}/lm"
        await client.publish(model_id, TEST_LM, "None", 2)
        await client.wait_for_ready(model_id, 2, timeout=30)

        errors: list[BaseException] = []
        load = [asyncio.create_task(generate_load(client, model_id, 60, errors)) for _ in range(4)]
        await asyncio.sleep(0.1)
        cell.model_servers[1].kill()  # SIGKILL: connections drop, in-flight calls fail
        await asyncio.sleep(0.1)
        await cell.restart_admin(kill=True)
        assert sum(await asyncio.gather(*load)) == 240
        assert errors == []

        # The restarted admin is a new incarnation: the watch resyncs to the one live replica.
        async for addresses in client.watch_addresses(model_id):
            if addresses == [cell.model_servers[0].address]:
                break
        assert (await client.list_detail(model_id, timeout=30)).active_replicas == 1

        # An update answered as the admin hangs (SIGSTOP before the client's new watch of the
        # model is answered): the replica known serves on. The client dropped it with the
        # model's old definition, so calls waited for the admin and failed UNAVAILABLE (5 s).
        await client.update(model_id, num_replicas=1)
        with stopped(cell.admin_pid):
            reply = await client.lm_generate(model_id, "on", CallOptions(timeout=30))
        assert reply == [("on", approx(-0.1))]


async def test_seed_model_generates(cell_processes: EmbeddedCell) -> None:
    async with Client(ClientSettings(sax_root=cell_processes.sax_root)) as client:
        model_id = f"{CELL}/lm2b"
        await client.publish(model_id, SEED_LM, "None", 1)
        await client.wait_for_ready(model_id, 1, timeout=30)
        options = CallOptions(timeout=30, extra_inputs={"temperature": 0.5})
        samples = await client.lm_generate(model_id, "Q: Who is Harry Potter's mom? A: ", options)
        assert samples
        assert all(isinstance(text, str) for text, _ in samples)
