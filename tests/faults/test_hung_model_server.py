"""A model server hangs (SIGSTOP: its connections stay open, its calls never answer), as when
its host stops responding. The calls it holds run into their deadlines; new calls go to the
replica that answers, where round-robin kept sending the hung one every other call, and the
hung one gets calls again once it answers (SIGCONT)."""

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


# A call one after another, each given 3 s: alone, it leaves the hung replica no call in
# flight between two of its own, so its load cannot warn the router off it.
WINDOW_S = 12.0
# By then the gateway process whose call was stuck on the hung replica has found it silent
# (a probe of its own unanswered: `gateway/client/_hung.py`), and the other one heard of it.
ROUTED_AROUND_S = 4.0


def _one_after_another(http: httpx.Client, body: dict[str, str]) -> list[tuple[float, int, float]]:
    """Calls one after another for WINDOW_S: each call's start (seconds after the first),
    status, and how long it took."""
    calls: list[tuple[float, int, float]] = []
    started = time.monotonic()
    while (began := time.monotonic()) - started < WINDOW_S:
        status = http.post("/generate", json=body).status_code
        calls.append((round(began - started, 2), status, round(time.monotonic() - began, 2)))
    return calls


def _assert_routed_around(calls: list[tuple[float, int, float]]) -> None:
    failed = [call for call in calls if call[1] != 200]
    # A call the hung replica took before a gateway found it silent: a 504 at its deadline,
    # one for the stack, in the first seconds: the other gateway process heard of it (the
    # stack's board) before the next call began. Each finding it alone, a caller met one per
    # gateway process (two, 3 s apart); round-robin failed every other call for as long as
    # the admin kept the replica (30 s): a 504 every 3 s here.
    assert len(failed) <= 1, calls
    assert all(status == 504 and at < ROUTED_AROUND_S for at, status, _ in failed), calls
    assert all(took < 2.5 for _, status, took in calls if status == 200), calls


def test_a_hung_replica_gets_no_calls_within_seconds_and_gets_them_once_it_answers(
    faults: Faults, http: httpx.Client
) -> None:
    model = "/sax/test/serverstops"
    publish(http, model, replicas=2)
    first, second = list(http.get(f"/v1{model}").json()["model"]["addresses"])
    body = {"model": model, "query": "one two three", "timeout": TIMEOUT}
    for _ in range(20):  # both gateways connect to both replicas: the hang meets open channels
        assert http.post("/generate", json=body).status_code == 200
    with stopped(faults.pid(int(first.rsplit(":", 1)[1]))):
        _assert_routed_around(_one_after_another(http, body))
    time.sleep(3)  # each gateway asks it again every second
    # It serves again: were it still shunned, with the other one hung too, both would be
    # alike and round-robin would send the hung one every other call again.
    with stopped(faults.pid(int(second.rsplit(":", 1)[1]))):
        _assert_routed_around(_one_after_another(http, body))
    for _ in range(10):
        assert http.post("/generate", json=body).status_code == 200
