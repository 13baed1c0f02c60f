"""/v1/models and /v1/models/{id} for a model whose methods Sax has not reported yet.

Sax reports a model's methods once its admin has polled a replica that loaded it (upstream's
admin polls every 10 s, after data calls already reach the replica; the embedded admin polls
right after each load), and never for a model that has not loaded yet. A language model
published moments ago, or at 0 replicas, was a 404 "not a language model" on /v1/models/{id}
and missing from /v1/models, while a completion on it is served once it has a replica
requested. Over real gRPC, against an in-process cell; the model is published straight at its
admin."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import openai_pb2, openai_pb2_grpc
from saxml.protobuf import admin_pb2

from gateway.cell import AdminServer
from gateway.client import Client, ClientSettings
from gateway.launch.processes import free_port
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
TEST_VISION = "sax_gateway.testing.TestVision"
LM = "/sax/test/idle-lm"
VISION = "/sax/test/vision"


@pytest.fixture
async def openai(inproc_cell: InprocCell) -> AsyncIterator[openai_pb2_grpc.OpenAIGatewayAsyncStub]:
    async with (
        running_gateway(inproc_cell.sax_root) as server,
        aio_channel(server.address) as channel,
    ):
        yield openai_pb2_grpc.OpenAIGatewayStub(channel)


def _model(model_id: str, created: int) -> dict[str, object]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "sax",
        "root": model_id,
        "parent": None,
    }


async def test_a_model_that_reported_no_methods_yet_is_listed_and_found(
    inproc_cell: InprocCell, openai: openai_pb2_grpc.OpenAIGatewayAsyncStub
) -> None:
    async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
        await sax.publish(LM, TEST_LM, "None", 0)
        await sax.publish(VISION, TEST_VISION, "None", 1)
        await sax.wait_for_ready(VISION, 1, timeout=10)
        assert (await sax.list_detail(LM)).method_names == []
        assert "vm.classify" in (await sax.list_detail(VISION)).method_names

    found = await openai.GetOpenAIModel(openai_pb2.GetOpenAIModelRequest(model=LM))
    assert json.loads(found.data) == _model(LM, json.loads(found.data)["created"])
    listed = json.loads((await openai.ListOpenAIModels(openai_pb2.ListOpenAIModelsRequest())).data)
    assert listed == {"object": "list", "data": [_model(LM, listed["data"][0]["created"])]}
    # A model whose methods are known is judged by them.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await openai.GetOpenAIModel(openai_pb2.GetOpenAIModelRequest(model=VISION))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == f"{VISION} is not a language model (it has no lm.generate)"
    # And what the listing offers is served once it has a replica requested; until then a
    # completion fails at once saying why (it waited for its whole deadline, then 504).
    with pytest.raises(grpc.aio.AioRpcError) as unserved:
        await _complete(openai, LM)
    assert (unserved.value.code(), unserved.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        f"{LM} has no replica to serve it: it is published with 0 replicas (an update of its "
        "replicas makes it serve)",
    )
    async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
        await sax.update(LM, num_replicas=1)
        await sax.wait_for_ready(LM, 1, timeout=10)
    until = time.monotonic() + 5  # the gateway hears of the replica, or its refusal expires
    while True:
        try:
            answer = await _complete(openai, LM)
            break
        except grpc.aio.AioRpcError as refused:
            if refused.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > until:
                raise
            await asyncio.sleep(0.1)
    assert [(c["text"], c["finish_reason"]) for c in answer["choices"]] == [("served", "stop")]


async def _complete(openai: openai_pb2_grpc.OpenAIGatewayAsyncStub, model: str) -> Any:
    body = json.dumps({"model": model, "prompt": "served"}).encode()
    request = openai_pb2.CreateCompletionRequest(
        body=HttpBody(content_type="application/json", data=body)
    )
    [reply] = [json.loads(m.data) async for m in openai.CreateCompletion(request, timeout=20)]
    return reply


async def test_a_cell_whose_admin_is_gone_holds_up_only_the_first_listing(
    inproc_cell: InprocCell, caplog: pytest.LogCaptureFixture
) -> None:
    # Of two cells, one's admin is gone (its location.proto names a port nothing serves):
    # /v1/models left that cell out, but only after waiting the whole unreachable window
    # (--admin-unreachable-after, 5 s by default; 6-10 s measured on a stack), at every
    # call for as long as the outage lasted, and logged a WARNING at each one. Now only the
    # first call waits; later ones give that cell a moment, until it answers again.
    caplog.set_level(logging.INFO, logger="gateway.service.openai")
    gone = "/sax/gone"
    cell_dir = Path(inproc_cell.sax_root) / gone.lstrip("/")
    cell_dir.mkdir(parents=True)
    away = admin_pb2.Location(location=f"127.0.0.1:{free_port()}")
    (cell_dir / "location.proto").write_bytes(away.SerializeToString())
    async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
        await sax.publish(LM, TEST_LM, "None", 0)
    # A window well apart from DOWN_WAIT_S (1 s), so that a loaded host (3.08 s seen for the
    # 1 s wait at load 27) cannot make a short wait look like the window again.
    client = ClientSettings(sax_root=inproc_cell.sax_root, admin_unreachable_after=6.0)
    async with (
        running_gateway(inproc_cell.sax_root, client) as server,
        aio_channel(server.address) as channel,
    ):
        openai = openai_pb2_grpc.OpenAIGatewayStub(channel)
        took = []
        for _ in range(3):
            started = time.monotonic()
            listed = await _listed(openai)
            took.append(time.monotonic() - started)
            assert listed == [LM]
        assert took[0] >= 6.0
        assert max(took[1:]) < 4.5, took  # DOWN_WAIT_S (1 s); it was the window (6 s) again
        # A line per cause, not per listing: the first listing's cause is the unreachable
        # admin; a later one's may be its 1 s running out first (a loaded host), a line of
        # its own (FailureLog).
        left_out = [
            (r.levelname, r.getMessage()) for r in caplog.records if "left out" in r.getMessage()
        ]
        assert {level for level, _ in left_out} == {"WARNING"}
        assert all(m.startswith(f"/v1/models: cell {gone} left out: ") for _, m in left_out)
        assert len(left_out) == len(set(left_out)), left_out
        # Its admin back (it takes the cell over from the address that does not answer), the
        # cell is listed again at the next call, without restarting the gateway.
        admin = AdminServer(dataclasses.replace(inproc_cell.settings, cell=gone))
        await admin.start()
        try:
            async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
                await sax.publish(f"{gone}/lm", TEST_LM, "None", 0)
            assert await _listed(openai) == [f"{gone}/lm", LM]
            assert f"/v1/models: listing the models of {gone} works again" in caplog.text
        finally:
            await admin.stop(grace=0)


async def _listed(openai: openai_pb2_grpc.OpenAIGatewayAsyncStub) -> list[str]:
    reply = await openai.ListOpenAIModels(openai_pb2.ListOpenAIModelsRequest(), timeout=30)
    return [m["id"] for m in json.loads(reply.data)["data"]]
