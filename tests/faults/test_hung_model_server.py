"""A model server hangs (SIGSTOP: its connections stay open, its calls never answer), as when
its host stops responding. The calls it holds run into their deadlines; new calls go to the
replica that answers, where round-robin kept sending the hung one every other call."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests._stacks import stopped
from tests.faults.conftest import Faults, publish

CALLS = 40
SPACING_S = 0.05
TIMEOUT = "3s"


async def _spaced_calls(url: str, body: dict[str, str]) -> list[tuple[int, float]]:
    """CALLS calls, one started every SPACING_S whatever the others do (independent clients,
    not a closed loop): each call's status and how long it took."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(delay: float) -> tuple[int, float]:
            await asyncio.sleep(delay)
            started = time.monotonic()
            response = await client.post("/generate", json=body)
            return response.status_code, time.monotonic() - started

        return await asyncio.gather(*(one(i * SPACING_S) for i in range(CALLS)))


def test_a_hung_replica_stalls_only_the_calls_it_holds(faults: Faults, http: httpx.Client) -> None:
    model = "/sax/test/serverhung"
    publish(http, model, replicas=2)
    addresses = list(http.get(f"/v1{model}").json()["model"]["addresses"])
    assert len(addresses) == 2, addresses
    body = {"model": model, "query": "one two three", "timeout": TIMEOUT}
    for _ in range(20):  # both gateways connect to both replicas: the hang meets open channels
        assert http.post("/generate", json=body).status_code == 200
    pid = faults.pid(int(addresses[0].rsplit(":", 1)[1]))
    with stopped(pid):
        calls = asyncio.run(_spaced_calls(faults.url, body))
    stalled = [(status, round(took, 2)) for status, took in calls if status != 200]
    # A call the hung replica took while the other was at least as busy ends with its
    # deadline (504): one per gateway on a quiet machine, a few more when the answering
    # replica is slow to answer. Round-robin stalled half of them (20 of 40).
    assert len(stalled) <= 8, stalled
    assert all(status == 504 for status, _ in stalled), stalled
    # The others were answered, none after waiting on the hung replica (3 s).
    assert all(took < 2.5 for status, took in calls if status == 200), calls
    # Resumed, it serves again: every call answers, none is left counted against it.
    for _ in range(10):
        assert http.post("/generate", json=body).status_code == 200
