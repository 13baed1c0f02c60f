"""Cell IDs come from callers: a client asked about many cells that do not exist keeps a
bounded number of cell admins, and the cells that do exist keep working."""

from __future__ import annotations

import pytest

from gateway.client import CallOptions, Client, NotFoundError
from gateway.client._client import MAX_CELL_ADMINS
from tests.integration._client_fixtures import CELL, publish_ready


async def test_made_up_cell_names_do_not_pile_up(client: Client) -> None:
    lm = await publish_ready(client, "bounded", replicas=1)
    assert len(await client.lm_generate(lm, "before", CallOptions(timeout=10))) > 0

    # Every distinct cell name a caller makes up (a data call, a model listing) was kept
    # for good, about 1 KB each in the gateway: an authenticated caller with the data role
    # could grow a gateway process without bound, one request per name.
    for i in range(MAX_CELL_ADMINS + 100):
        with pytest.raises(NotFoundError, match="not found"):
            if i % 2:
                await client.lm_generate(f"/sax/nocell{i}/lm", "hi", CallOptions(timeout=10))
            else:
                await client.list_detail(f"/sax/nocell{i}/lm")

    assert client.num_cell_admins <= MAX_CELL_ADMINS
    # The real cell's admin, connected, was kept, and its model still serves.
    assert CELL in client.known_cells()
    assert len(await client.lm_generate(lm, "after", CallOptions(timeout=10))) > 0
    assert (await client.list_detail(lm)).model_id == lm
