"""What `saxgw up` asks a gateway once it is up (gateway/cli/_restored.py), of real
gateway processes: no answer is None (ask again), never "no models restored" (a live gateway
listing the models it restored: tests/e2e/test_up.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway.cli._restored import LOAD_ERRORS_PER_POLL, Restored, RestoredModels
from gateway.launch.processes import free_port
from gateway.service import GatewayServer
from tests._stacks import cell_less_gateway, stopped
from tests.integration._cell_fixtures import CELL, InprocCell, admin_stub, publish
from tests.integration._gateway_fixtures import running_gateway


def _no_answer(address: str) -> bool:
    return RestoredModels(address, CELL, patience=0).poll() is None


def test_no_gateway_is_no_answer() -> None:
    assert _no_answer(f"127.0.0.1:{free_port()}")


def test_a_hung_gateway_is_no_answer(tmp_path: Path) -> None:
    # Before, both were []: `saxgw up` took a gateway that did not answer for one that had
    # restored nothing, and never printed the models it had restored.
    with cell_less_gateway(tmp_path) as (gateway, port), stopped(gateway.pid):
        assert _no_answer(f"127.0.0.1:{port}")


def _whole_listing(address: str) -> grpc.StatusCode:
    """The status of a ListModels of the whole cell in one reply."""
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        try:
            stub.ListModels(gateway_pb2.ListModelsRequest(sax_cell=CELL), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _get_models(server: GatewayServer) -> float:
    """GetModel calls the gateway has served (each an admin List and WatchLoc)."""
    assert server.metrics is not None
    server.metrics.flush()
    labels = {"grpc_method": "GetModel", "grpc_code": "OK", "client": "anonymous"}
    return server.metrics.registry.get_sample_value("saxgw_requests_total", labels) or 0.0


async def test_restored_models_no_server_takes_are_named_at_a_bounded_cost(
    inproc_cell: InprocCell,
) -> None:
    # A big cell restarted with more models than its servers have room for: those never
    # serve nor fail, and `saxgw up` asked GetModel of every one of them twice a second for
    # as long as it ran (300 models, 6 full servers: ~400 admin RPCs a second) and never
    # said which it waited for. Here 30 models whose path no server serves stand in for them.
    served, broken = f"{CELL}/served", f"{CELL}/broken"
    orphans = [f"{CELL}/orphan{i:02d}" for i in range(30)]
    async with admin_stub(inproc_cell.admin_address) as admin:
        await publish(admin, "served")
        await publish(admin, "broken", overrides={"fail_load": "disk on fire"}, wait=False)
        for model in orphans:
            await publish(admin, model.rsplit("/", 1)[1], model_path="no.server.Serves", wait=False)
    # And a listing over the message limit, as a big cell's can be: it is read in pages.
    limit = 1024
    async with running_gateway(
        inproc_cell.sax_root, health_interval=60, max_message_bytes=limit
    ) as server:
        whole = await asyncio.to_thread(_whole_listing, server.address)
        assert whole == grpc.StatusCode.INVALID_ARGUMENT  # over the limit in one reply
        restored = RestoredModels(server.address, CELL, patience=60, started=0.0)
        told = []
        for _ in range(10):  # every unserved model asked once: ceil(31 / 8) polls
            before = _get_models(server)
            if news := await asyncio.to_thread(restored.poll, now=1.0):
                told.append(news)
            assert _get_models(server) - before <= LOAD_ERRORS_PER_POLL
        # Past the patience, the last report: the 30 that neither served nor failed.
        last = await asyncio.to_thread(restored.poll, now=60.0)
    # Within it, each as it came, once: the one that serves at the first poll, the one that
    # failed to load (with its load error) once asked; not held back by the 30 others.
    assert told and not any(news.final or news.waiting for news in told)
    assert told[0].ready == [(served, 1, 1)]
    assert [m for news in told for m in news.ready] == [(served, 1, 1)]
    [(model, error)] = [f for news in told for f in news.failed]
    assert model == broken and "TestLM failed to load: disk on fire" in error
    assert last == Restored(ready=[], failed=[], waiting=orphans)
