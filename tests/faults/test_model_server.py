"""A model server dies (or is stopped): its single-replica model moves to the other server
(or to the same server, restarted by the cell) within seconds, and calls keep being answered
meanwhile; a stream that had begun on it says which replica went away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from gateway.launch.ports import listener_pid
from tests.e2e._published import request_info
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

    body = {"model": model, "query": "one two three"}

    async def kill_and_watch() -> None:
        await asyncio.sleep(1.0)
        dead = faults.kill(port)
        killed = time.monotonic()
        async with httpx.AsyncClient(base_url=faults.url, timeout=10) as client:
            while time.monotonic() - killed < 20:
                now = (await client.get(f"/v1{model}")).json()["model"]["addresses"]
                if now and address not in now:
                    moved.append(time.monotonic() - killed)
                    return
                # Or the cell restarted the server on its port (0.5 s) before the admin saw
                # it die, and the admin placed the model on it again: listed at the same
                # address, served by another process, answering.
                restarted = listener_pid(port) not in (None, dead)
                if restarted and (await client.post("/generate", json=body)).status_code == 200:
                    moved.append(time.monotonic() - killed)
                    return
                await asyncio.sleep(0.05)

    result = asyncio.run(
        run_load(faults.url, "/generate", body, seconds=6, concurrency=4, during=kill_and_watch)
    )
    assert moved, f"{model} still not served again 20 s after its server died"
    print(f"{model} served again {moved[0]:.2f} s after the kill")
    assert moved[0] < 10  # the admin used to wait 30 s; the target is 3 s (see RELIABILITY.md)
    # Calls in flight on the dead server failed over; later ones waited for the new replica.
    assert result.errors() == {}, result.error_samples()


def _cut_streams(
    faults: Faults, http: httpx.Client, model: str, cut: Callable[[int], object]
) -> tuple[str, dict[str, object], openai.APIError, httpx.Response]:
    """An SSE stream and an OpenAI SDK stream of ``model``, both begun, then ``cut(port)`` of
    its one replica: the replica's address, the SSE stream's last event, what the SDK raised,
    and the SSE response."""
    publish(http, model, text=" ".join(["tok"] * 100), delay_ms="100")
    (address,) = _addresses(http, model)
    sdk = openai.OpenAI(base_url=f"{faults.url}/v1", api_key="unused", max_retries=0)
    with (
        http.stream("POST", "/generate_stream", json={"model": model, "query": "q"}) as sse,
        sdk.completions.create(model=model, prompt="q", stream=True) as completion,
    ):
        lines = sse.iter_lines()
        assert next(lines).startswith("data: ")  # both streams have begun
        assert next(iter(completion)).choices[0].text == "tok"
        cut(int(address.rsplit(":", 1)[1]))
        last = json.loads([line for line in lines if line][-1].removeprefix("data: "))
        with pytest.raises(openai.APIError) as raised:
            _ = list(completion)
    return address, last, raised.value, sse


def test_a_stream_whose_model_server_dies_says_which_and_that_it_cannot_move(
    faults: Faults, http: httpx.Client
) -> None:
    # A stream that has begun cannot fail over, so it ends with the replica's failure; grpc
    # named it "Stream removed (Socket closed)": nothing about which model or replica, nor
    # that sending it again is what helps. On SSE and on an OpenAI stream, as the SDK raises it.
    model = "/sax/test/dying"
    address, last, raised, sse = _cut_streams(faults, http, model, faults.kill)
    error = last["error"]
    assert isinstance(error, dict)
    message = error["message"]
    assert last == {
        "deltas": [],
        "done": True,
        "texts": [],
        "error": {"code": 14, "message": message, "details": [request_info(sse)]},
    }
    assert message.startswith(f"the model server of {model} at {address} went away during the")
    assert message.endswith("a stream that has begun cannot move to another replica: send it again")
    assert raised.message.startswith(f"the model server of {model} at {address} went away")
    assert raised.type == "service_unavailable_error"


def test_a_stream_whose_model_server_is_stopped_says_which_and_that_it_cannot_move(
    faults: Faults, http: httpx.Client
) -> None:
    # A model server told to stop (SIGTERM: a rolling restart of the cell) gives its calls a
    # grace period, then ends those still running UNAVAILABLE, as any grpc server does
    # (upstream's model servers are Python grpc servers: "Cancelling all calls"). A stream
    # that outlasts it ended with the cell's "the server is stopping: Unavailable": the
    # caller could not tell the gateway's stop from a model server's, nor which replica it
    # was, nor that sending it again is what helps. Now it reads as a replica gone away.
    model = "/sax/test/stopping"

    def stop(port: int) -> None:
        os.kill(faults.pid(port), signal.SIGTERM)

    address, last, raised, sse = _cut_streams(faults, http, model, stop)
    went_away = (
        f"the model server of {model} at {address} went away during the stream "
        "(Cancelling all calls); a stream that has begun cannot move to another replica: "
        "send it again"
    )
    assert last == {
        "deltas": [],
        "done": True,
        "texts": [],
        "error": {"code": 14, "message": went_away, "details": [request_info(sse)]},
    }
    assert raised.message == went_away
    assert raised.type == "service_unavailable_error"
