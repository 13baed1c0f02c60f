"""Fixtures of the Sax client's integration tests: a real embedded cell on port 0, a client.

The cell is the project's own (gateway.cell): an admin server and model servers speaking Sax's
protocol over real sockets, with the cell's polling intervals shrunk so tests run fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cell.settings import CellSettings
from gateway.client import CallOptions, Client, ClientSettings
from tests.integration._cell_fixtures import CELL, SEED_LM, TEST_LM, InprocCell, inproc

TEST_VISION = "sax_gateway.testing.TestVision"
TEST_AUDIO = "sax_gateway.testing.TestAudio"
TEST_CUSTOM = "sax_gateway.testing.TestCustom"


# The client tests' names for the one in-process cell (tests/integration/_cell_fixtures.py).
RunningCell = InprocCell
running_cell = inproc
__all__ = ["CELL", "SEED_LM", "TEST_LM"]  # re-exported for the client tests


async def generate_load(
    client: Client, model_id: str, calls: int, errors: list[BaseException]
) -> int:
    """Makes ``calls`` generate calls one after the other; returns how many succeeded and
    collects the failures in ``errors`` (a test runs several at once while it breaks things)."""
    done = 0
    for _ in range(calls):
        try:
            await client.lm_generate(model_id, "keep going", CallOptions(timeout=10))
            done += 1
        except Exception as exc:
            errors.append(exc)
        await asyncio.sleep(0.005)
    return done


def cell_settings(sax_root: str, **overrides: object) -> CellSettings:
    fast: dict[str, object] = {
        "poll_interval": 0.1,
        "server_dead_after": 1.0,
        "location_watch_interval": 0.2,
        "rpc_timeout": 2.0,
    }
    fast.update(overrides)
    return CellSettings(sax_root=sax_root, cell=CELL, **fast)  # type: ignore[arg-type]


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
