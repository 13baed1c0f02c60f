"""Model ACLs after a change made through this gateway: in force for its next call.

The gateway reuses a model's ACLs for up to two seconds (docs/security.md), which bounds how
long a change made elsewhere (another gateway process, saxutil at the admin) takes. A model
unpublished and published again through this very gateway kept its old ACLs that long: the
client that had just republished it without them was refused by them. Over real gRPC, against
an in-process cell; the ACL is set straight at the admin, as saxutil does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.client import Client, ClientSettings
from gateway.config import AccessSettings
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
MODEL = "/sax/test/guarded"
BOB = (("x-saxgw-client", "bob"),)


@pytest.fixture
async def stub(inproc_cell: InprocCell) -> AsyncIterator[gateway_pb2_grpc.SaxGatewayAsyncStub]:
    access = AccessSettings(groups={"team": frozenset({"alice"})})
    async with (
        running_gateway(inproc_cell.sax_root, access=access) as server,
        aio_channel(server.address) as channel,
    ):
        yield gateway_pb2_grpc.SaxGatewayStub(channel)


async def _publish(stub: gateway_pb2_grpc.SaxGatewayAsyncStub) -> None:
    await stub.PublishModel(
        pb.PublishModelRequest(model=MODEL, model_path=TEST_LM, checkpoint="None", replicas=1),
        timeout=20,
    )
    await stub.WaitForReady(pb.WaitForReadyRequest(model=MODEL), timeout=20)


async def test_a_model_republished_here_drops_its_old_acls_at_once(
    inproc_cell: InprocCell, stub: gateway_pb2_grpc.SaxGatewayAsyncStub
) -> None:
    await _publish(stub)
    async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
        await sax.set_acl(MODEL, "acl/team", method="lm.generate")
    request = pb.GenerateRequest(model=MODEL, query="mine")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Generate(request, timeout=20, metadata=BOB)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == (
        f"lm.generate on {MODEL} is limited to acl/team; client bob is not in it"
    )
    await stub.UnpublishModel(pb.UnpublishModelRequest(model=MODEL), timeout=20)
    await _publish(stub)  # without the ACL
    reply = await stub.Generate(request, timeout=20, metadata=BOB)
    assert [(t.text, round(t.score, 6)) for t in reply.texts] == [("mine", -0.1)]
