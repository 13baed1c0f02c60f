"""One deadline per call, against a slow admin: a real gRPC admin server that answers every call
after DELAY seconds. An operation that makes two admin RPCs within a budget BUDGET, with
DELAY < BUDGET < 2 * DELAY, can only finish by giving each RPC the whole budget; with one
deadline, the second RPC gets what is left and the operation ends DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.client import Client, ClientSettings, DeadlineExceededError
from gateway.common.deadline import Deadline
from gateway.common.rpc import Context
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import stand_in_admin
from tests.integration._gateway_fixtures import running_gateway

MODEL = "/sax/slow/lm"
DELAY = 1.0
BUDGET = 1.6


class SlowAdmin(admin_pb2_grpc.AdminServicer):
    """Answers List, Update and WaitForReady correctly, each after DELAY seconds; records the
    deadline each call about MODEL arrived with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    async def _slow(self, method: str, model_id: str, context: Context) -> None:
        if model_id == MODEL:  # not the gateway's health probe (a List of the whole cell)
            self.calls.append((method, context.time_remaining()))
        await asyncio.sleep(DELAY)

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        await self._slow("List", request.model_id, context)
        model = admin_pb2.Model(model_id=MODEL, model_path="some.Model", checkpoint_path="None")
        return admin_pb2.ListResponse(published_models=[admin_pb2.PublishedModel(model=model)])

    async def Update(
        self, request: admin_pb2.UpdateRequest, context: Context
    ) -> admin_pb2.UpdateResponse:
        await self._slow("Update", request.model.model_id, context)
        return admin_pb2.UpdateResponse()

    async def WaitForReady(
        self, request: admin_pb2.WaitForReadyRequest, context: Context
    ) -> admin_pb2.WaitForReadyResponse:
        await self._slow("WaitForReady", request.model_id, context)
        return admin_pb2.WaitForReadyResponse()


@pytest.fixture
async def slow_admin(tmp_path: Path) -> AsyncIterator[tuple[str, SlowAdmin]]:
    # Only the RPCs under test: the .pyi marks every RPC abstract, while at run time the rest
    # answer UNIMPLEMENTED from the generated base class.
    servicer = SlowAdmin()  # type: ignore[abstract]
    root = str(tmp_path / "root")
    async with stand_in_admin(servicer, root, "/sax/slow"):
        yield root, servicer


def _later_calls_got_only_what_was_left(admin: SlowAdmin, skip: int = 1) -> None:
    # Every RPC after the first slow one arrived with less than BUDGET - DELAY left.
    for _, remaining in admin.calls[skip:]:
        assert remaining is not None
        assert remaining < BUDGET - DELAY + 0.1


async def test_client_update_shares_one_deadline(slow_admin: tuple[str, SlowAdmin]) -> None:
    root, admin = slow_admin
    async with Client(ClientSettings(sax_root=root)) as client:
        with pytest.raises(DeadlineExceededError):
            await client.update(MODEL, num_replicas=2, timeout=BUDGET)
    assert admin.calls[0][0] == "List"
    _later_calls_got_only_what_was_left(admin)


async def test_client_operations_share_a_callers_deadline(
    slow_admin: tuple[str, SlowAdmin],
) -> None:
    root, admin = slow_admin
    async with Client(ClientSettings(sax_root=root)) as client:
        deadline = Deadline.after(BUDGET)
        await client.wait_for_ready(MODEL, deadline=deadline)
        with pytest.raises(DeadlineExceededError):
            await client.list_detail(MODEL, deadline=deadline)
    _later_calls_got_only_what_was_left(admin)


@pytest.fixture
async def gateway_stub(
    slow_admin: tuple[str, SlowAdmin],
) -> AsyncIterator[gateway_pb2_grpc.SaxGatewayAsyncStub]:
    root, _ = slow_admin
    # The gateway's default deadline is the budget; the callers below set no gRPC deadline,
    # so only the gateway's own deadline can end the calls.
    async with (
        running_gateway(root, default_timeout=BUDGET, health_interval=60) as server,
        aio_channel(server.address) as channel,
    ):
        yield gateway_pb2_grpc.SaxGatewayStub(channel)


async def test_gateway_update_model_ends_at_its_deadline(
    gateway_stub: gateway_pb2_grpc.SaxGatewayAsyncStub, slow_admin: tuple[str, SlowAdmin]
) -> None:
    # UpdateModel is List (slow), Update (slow), and answers with what it wrote: each fits in
    # BUDGET alone, so only a shared deadline ends the call.
    _, admin = slow_admin
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gateway_stub.UpdateModel(pb.UpdateModelRequest(model=MODEL, replicas=2))
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [method for method, _ in admin.calls][:2] == ["List", "Update"]
    _later_calls_got_only_what_was_left(admin)


async def test_gateway_wait_for_ready_ends_at_its_deadline(
    gateway_stub: gateway_pb2_grpc.SaxGatewayAsyncStub, slow_admin: tuple[str, SlowAdmin]
) -> None:
    _, admin = slow_admin
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gateway_stub.WaitForReady(pb.WaitForReadyRequest(model=MODEL))
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [method for method, _ in admin.calls][:1] == ["WaitForReady"]
    _later_calls_got_only_what_was_left(admin)
