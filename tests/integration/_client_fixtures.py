"""Fixtures of the Sax client's integration tests: a real embedded cell on port 0, a client.

The cell is the project's own (gateway.cell): an admin server and model servers speaking Sax's
protocol over real sockets, with the cell's polling intervals shrunk so tests run fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.cell.admin.server import AdminServer
from gateway.cell.modelserver.loaded import Cancellation
from gateway.cell.modelserver.server import ModelServer
from gateway.cell.settings import CellSettings
from gateway.client import Client, ClientSettings

CELL = "/sax/test"
TEST_LM = "sax_gateway.testing.TestLM"
TEST_VISION = "sax_gateway.testing.TestVision"
TEST_AUDIO = "sax_gateway.testing.TestAudio"
TEST_CUSTOM = "sax_gateway.testing.TestCustom"
SEED_LM = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"


@dataclass
class RunningCell:
    """An admin server and model servers of one cell, all in this process."""

    settings: CellSettings
    admin: AdminServer
    model_servers: list[ModelServer]
    cancellations: list[Cancellation] = field(default_factory=list)

    @property
    def sax_root(self) -> str:
        return self.settings.sax_root

    @property
    def admin_address(self) -> str:
        return self.admin.address

    async def move_admin(self) -> None:
        """Stops the admin and starts a new one on another port (it rewrites location.proto)."""
        old = self.admin.address
        await self.admin.stop(grace=0)
        self.admin = AdminServer(self.settings)
        await self.admin.start()
        # Port 0 practically never hands the old port out again at once; if it did, the test
        # would still pass, but without proving anything about following a move.
        assert self.admin.address != old


def cell_settings(sax_root: str, **overrides: object) -> CellSettings:
    fast: dict[str, object] = {
        "poll_interval": 0.1,
        "server_dead_after": 1.0,
        "location_watch_interval": 0.2,
        "rpc_timeout": 2.0,
    }
    fast.update(overrides)
    return CellSettings(sax_root=sax_root, cell=CELL, **fast)  # type: ignore[arg-type]


@asynccontextmanager
async def running_cell(
    settings: CellSettings, num_model_servers: int
) -> AsyncIterator[RunningCell]:
    admin = AdminServer(settings)
    await admin.start()
    cell = RunningCell(settings=settings, admin=admin, model_servers=[])
    try:
        for _ in range(num_model_servers):
            server = ModelServer(settings, on_cancelled=cell.cancellations.append)
            await server.start()
            cell.model_servers.append(server)
        for server in cell.model_servers:
            await asyncio.wait_for(server.joined.wait(), 10)
        yield cell
    finally:
        for server in cell.model_servers:
            await server.stop(grace=0)
        await cell.admin.stop(grace=0)


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[RunningCell]:
    """A cell with two model servers under a fresh local SAX_ROOT."""
    async with running_cell(cell_settings(str(tmp_path / "root")), 2) as running:
        yield running


@pytest.fixture
async def client(cell: RunningCell) -> AsyncIterator[Client]:
    async with Client(ClientSettings(sax_root=cell.sax_root, admin_timeout=10.0)) as sax:
        yield sax


async def publish_ready(
    client: Client,
    name: str,
    model_path: str = TEST_LM,
    replicas: int = 2,
    overrides: dict[str, str] | None = None,
) -> str:
    """Publishes ``/sax/test/<name>`` and waits until ``replicas`` servers serve it."""
    model_id = f"{CELL}/{name}"
    await client.publish(model_id, model_path, "None", replicas, overrides)
    await client.wait_for_ready(model_id, replicas, timeout=20)
    return model_id


@pytest.fixture
async def lm(client: Client) -> str:
    """The deterministic test LM, published on both model servers."""
    return await publish_ready(client, "lm")
