"""How long the Sax client retries an overloaded model: for ``overloaded_after`` (1 s) from the
first RESOURCE_EXHAUSTED, not the call's deadline, then RESOURCE_EXHAUSTED naming the model.
Unreachable replicas are still retried until the deadline. A real in-process cell; its
TestLM refuses calls over its ``max_in_flight`` as an overloaded upstream model server does."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.client import (
    CallOptions,
    Client,
    ClientSettings,
    ResourceExhaustedError,
    UnavailableError,
)
from gateway.launch.processes import free_port
from tests.integration._client_fixtures import RunningCell, publish_ready

WINDOW = 1.0  # ClientSettings.overloaded_after's default
# Far longer than the client retries an overloaded model: the old code retried until it.
DEADLINE = CallOptions(timeout=60)
# Well under DEADLINE: a behaviour check (the answer came long before the deadline), with
# room for a loaded machine, not a timing benchmark.
WELL_BEFORE = 10.0
REFUSED = "TestLM is at its max_in_flight (0 calls at once)"


@pytest.fixture
async def busy(client: Client) -> str:
    """A model whose two replicas refuse every call RESOURCE_EXHAUSTED."""
    return await publish_ready(client, "busy", overrides={"max_in_flight": "0"})


async def test_an_overloaded_model_fails_after_the_overload_window_not_the_deadline(
    client: Client, busy: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ResourceExhaustedError) as refused:
        await client.lm_generate(busy, "x", DEADLINE)
    took = time.monotonic() - started
    assert refused.value.message == (
        f"{busy} is overloaded; retry later ({REFUSED}: ResourceExhausted)"
    )
    # Retried with backoff for the window (a retry that would start after it is not made).
    assert WINDOW / 2 < took < WELL_BEFORE


async def test_an_overloaded_stream_fails_as_a_unary_call_does(client: Client, busy: str) -> None:
    started = time.monotonic()
    with pytest.raises(ResourceExhaustedError) as refused:
        _ = [item async for item in client.lm_generate_stream(busy, "x", DEADLINE)]
    assert time.monotonic() - started < WELL_BEFORE
    assert refused.value.message == (
        f"{busy} is overloaded; retry later ({REFUSED}: ResourceExhausted)"
    )


async def test_an_overload_shorter_than_the_window_is_retried_away(
    client: Client, cell: RunningCell
) -> None:
    # One slot, held by a stream for ~0.6 s: a call made meanwhile is refused, retried, and
    # served once the stream ends, within the window.
    full = await publish_ready(
        client, "one-slot", replicas=1, overrides={"max_in_flight": "1", "delay_ms": "200"}
    )
    stream = client.lm_generate_stream(full, "a b c", DEADLINE)
    await anext(stream)  # the slot is taken
    answer = asyncio.create_task(client.lm_generate(full, "served", DEADLINE))
    _ = [item async for item in stream]
    assert [text for text, _ in await answer] == ["served"]
    # With no window, each replica is tried once: the same call is refused at once.
    settings = ClientSettings(sax_root=cell.sax_root, overloaded_after=0)
    async with Client(settings) as impatient:
        stream = impatient.lm_generate_stream(full, "a b c", DEADLINE)
        await anext(stream)
        with pytest.raises(ResourceExhaustedError):
            await impatient.lm_generate(full, "refused", DEADLINE)
        await stream.aclose()


async def test_an_unreachable_replica_is_still_retried_until_the_deadline(
    cell: RunningCell,
) -> None:
    # UNAVAILABLE (nothing listens) keeps its behaviour: the replica may come back, and the
    # overload window does not apply.
    nowhere = f"127.0.0.1:{free_port()}"
    settings = ClientSettings(sax_root=cell.sax_root, proxy_addr=nowhere, overloaded_after=0)
    async with Client(settings) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await client.lm_generate("/sax/test/any", "x", CallOptions(timeout=2))
        # It gives up when the next backoff would outlast the deadline: at most one backoff
        # (1 s, +20% jitter) before it, so not before 0.8 s (1.28 s in one full run). Under
        # the overload window it would have failed at the first round, within milliseconds.
        assert time.monotonic() - started > 0.8
