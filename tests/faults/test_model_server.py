"""A model server dies: its single-replica model moves to the other server within seconds, and
calls keep being answered meanwhile."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.faults._load import run_load
from tests.faults.conftest import Faults, publish


def _addresses(http: httpx.Client, model: str) -> list[str]:
    return list(http.get(f"/v1{model}").json()["model"]["addresses"])


def test_dead_model_server_is_replaced_within_seconds(faults: Faults, http: httpx.Client) -> None:
    model = "/sax/test/lonely"
    publish(http, model)
    (address,) = _addresses(http, model)
    port = int(address.rsplit(":", 1)[1])
    moved: list[float] = []

    async def kill_and_watch() -> None:
        await asyncio.sleep(1.0)
        faults.kill(port)
        killed = time.monotonic()
        async with httpx.AsyncClient(base_url=faults.url, timeout=10) as client:
            while time.monotonic() - killed < 20:
                now = (await client.get(f"/v1{model}")).json()["model"]["addresses"]
                if now and address not in now:
                    moved.append(time.monotonic() - killed)
                    return
                await asyncio.sleep(0.05)

    body = {"model": model, "query": "one two three"}
    result = asyncio.run(
        run_load(faults.url, "/generate", body, seconds=6, concurrency=4, during=kill_and_watch)
    )
    assert moved, f"{model} still not served elsewhere 20 s after its server died"
    print(f"{model} served by another model server {moved[0]:.2f} s after the kill")
    assert moved[0] < 10  # the admin used to wait 30 s; the target is 3 s (see RELIABILITY.md)
    # Calls in flight on the dead server failed over; later ones waited for the new replica.
    assert result.errors() == {}, result.error_samples()
