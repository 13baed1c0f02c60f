"""Model ACLs after a change made through this gateway: in force for its next call.

The gateway reuses a model's ACLs for up to two seconds (docs/security.md), which bounds how
long a change made elsewhere (another gateway process, saxutil at the admin) takes. A model
unpublished and published again through this very gateway kept its old ACLs that long: the
client that had just republished it without them was refused by them. Over real gRPC, against
an in-process cell; the ACL is set straight at the admin, as saxutil does. And a cell's
listing (ListModels) shows a client with a model list only the models it may name."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.client import Client, ClientSettings
from gateway.config import AccessSettings
from gateway.service import GatewayServer, _acls
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import InprocCell
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
MODEL = "/sax/test/guarded"
BOB = (("x-saxgw-client", "bob"),)
#: A client limited to some models (`clients.carol.models` in the config file).
CAROL = (("x-saxgw-client", "carol"),)
CAROL_MODELS = ("/sax/test/carol-*",)
BOUND_S = 10.0  # far beyond the documented two seconds: a test that fails waits this long
#: docs/security.md's "within about two seconds": two lifetimes of the ACLs at hand, plus the
#: renewal's own read and a call. About 1 s while calls keep coming (0.94 s loaded); 2.12 s
#: once on a loaded fresh clone, against a bound of 2.0 then, 2.5 until now: 1.5 s of room
#: over the two lifetimes for a loaded host. The bad, ACLs never renewed while calls keep
#: coming, is BOUND_S (10 s).
ABOUT_TWO_S = 3.5


@pytest.fixture
async def stub(inproc_cell: InprocCell) -> AsyncIterator[gateway_pb2_grpc.SaxGatewayAsyncStub]:
    access = AccessSettings(
        groups={"team": frozenset({"alice"})}, client_models={"carol": CAROL_MODELS}
    )
    async with (
        running_gateway(inproc_cell.sax_root, access=access) as server,
        aio_channel(server.address) as channel,
    ):
        yield gateway_pb2_grpc.SaxGatewayStub(channel)


async def _publish(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub, *models: str, wait: bool = True
) -> None:
    """Publishes ``models`` (MODEL by default), one replica each; ``wait``: until they serve."""
    names = models or (MODEL,)
    for model in names:
        await stub.PublishModel(
            pb.PublishModelRequest(model=model, model_path=TEST_LM, checkpoint="None", replicas=1),
            timeout=20,
        )
    if wait:
        for model in names:
            await stub.WaitForReady(pb.WaitForReadyRequest(model=model), timeout=20)


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


async def _until(stub: gateway_pb2_grpc.SaxGatewayAsyncStub, code: grpc.StatusCode) -> float:
    """Calls Generate as bob every 20 ms until it ends with ``code``; returns how long it took.
    Fails the test past BOUND_S."""
    started = time.monotonic()
    while time.monotonic() - started < BOUND_S:
        try:
            await stub.Generate(pb.GenerateRequest(model=MODEL, query="q"), metadata=BOB)
            got = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            got = exc.code()
        if got == code:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"still not {code.name} after {BOUND_S} s")


async def test_an_acl_set_at_the_admin_is_enforced_within_two_seconds(
    inproc_cell: InprocCell, stub: gateway_pb2_grpc.SaxGatewayAsyncStub
) -> None:
    # docs/security.md: ACLs are reused for a second, and for another while one read renews
    # them; calls keep coming all along, so the renewal path is what bounds it.
    await _publish(stub)
    # Served before the ACL is set; not timed: only the two changes below are (a first call
    # took 1.02 s on CI's loaded host, where a bound of 0.5 s stood here).
    await _until(stub, grpc.StatusCode.OK)
    async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
        await sax.set_acl(MODEL, "acl/team", method="lm.generate")
        assert await _until(stub, grpc.StatusCode.PERMISSION_DENIED) <= ABOUT_TWO_S
        await sax.set_acl(MODEL, "", method="lm.generate")
        assert await _until(stub, grpc.StatusCode.OK) <= ABOUT_TWO_S


async def test_a_method_acl_set_here_is_in_force_for_the_next_call(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub,
) -> None:
    # SetAcl with a method, through this gateway: its next call is judged by the new ACL,
    # although the ACLs it read a moment ago (none) are still within their lifetime.
    await _publish(stub)
    request = pb.GenerateRequest(model=MODEL, query="mine")
    await stub.Generate(request, timeout=20, metadata=BOB)  # reads (and keeps) the ACLs
    done = await stub.SetAcl(
        pb.SetAclRequest(name=MODEL, method="lm.generate", acl="acl/team"), timeout=20
    )
    assert done == pb.SetAclResponse(name=MODEL, method="lm.generate", acl="acl/team")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Generate(request, timeout=20, metadata=BOB)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == (
        f"lm.generate on {MODEL} is limited to acl/team; client bob is not in it"
    )
    got = await stub.GetAcl(pb.GetAclRequest(name=MODEL), timeout=20)
    assert got == pb.GetAclResponse(name=MODEL, method_acls={"lm.generate": "acl/team"})
    await stub.SetAcl(pb.SetAclRequest(name=MODEL, method="lm.generate", acl=""), timeout=20)
    reply = await stub.Generate(request, timeout=20, metadata=BOB)
    assert [(t.text, round(t.score, 6)) for t in reply.texts] == [("mine", -0.1)]
    got = await stub.GetAcl(pb.GetAclRequest(name=MODEL), timeout=20)
    assert got == pb.GetAclResponse(name=MODEL)


async def test_acl_reads_an_unreachable_admin_fails_are_not_a_line_per_model_name(
    inproc_cell: InprocCell, caplog: pytest.LogCaptureFixture
) -> None:
    # Each new model name a caller sent while the admin was unreachable was a WARNING of its
    # own (1,000 calls naming 1,000 names: 1,000 lines); now one per cell, cause and minute.
    client = ClientSettings(sax_root=inproc_cell.sax_root, admin_unreachable_after=0.2)
    async with (
        running_gateway(inproc_cell.sax_root, client=client) as server,
        aio_channel(server.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await inproc_cell.admin.stop(grace=0)
        caplog.set_level(logging.WARNING, logger="gateway.service._acls")
        for i in range(8):
            with pytest.raises(grpc.aio.AioRpcError):
                request = pb.GenerateRequest(model=f"/sax/test/n{i}", query="x")
                await stub.Generate(request, timeout=5)
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.service._acls"]
    # The stopped admin's port refuses; a connection made as it stopped may instead have
    # taken a List it never answered ("answered nothing to List for 0.2 s"): a second cause
    # is a line of its own (gateway/common/failurelog.py). One line was asserted, and a
    # full run met the second cause once.
    assert 1 <= len(messages) <= 2 and len(set(messages)) == len(messages), messages
    assert not [m for m in messages if "/sax/test/n" in m], messages


async def test_a_full_acl_cache_drops_the_model_unused_longest_not_every_model(
    inproc_cell: InprocCell, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache emptied itself when full: every model's next call then waited for the admin,
    # and while it was away, failed. Now the model unused longest makes room.
    monkeypatch.setattr(_acls, "_MAX_MODELS", 2)
    # 2 s: with 0.5 s, a loaded host (a full run at load 12) let a List of the live admin go
    # unanswered that long before the admin was stopped. The window is what the last call
    # waits, so it is kept short.
    client = ClientSettings(sax_root=inproc_cell.sax_root, admin_unreachable_after=2.0)
    models = [f"/sax/test/full{i}" for i in range(4)]
    async with (
        running_gateway(inproc_cell.sax_root, client=client) as server,
        aio_channel(server.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await _publish(stub, *models, wait=False)
        for model in models:  # read in this order: the first two make room for the last two
            await stub.WaitForReady(pb.WaitForReadyRequest(model=model), timeout=20)
            await stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=20)
        await inproc_cell.admin.stop(grace=0)
        for model in models[2:]:  # their ACLs are at hand: the admin is not needed
            reply = await stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=20)
            assert [t.text for t in reply.texts] == ["q"]
        with pytest.raises(grpc.aio.AioRpcError) as dropped:
            await stub.Generate(pb.GenerateRequest(model=models[0], query="q"), timeout=20)
        assert dropped.value.code() == grpc.StatusCode.UNAVAILABLE


def _lists(server: GatewayServer) -> float:
    """Admin Lists the gateway has sent."""
    assert server.metrics is not None
    server.metrics.flush()
    value = server.metrics.registry.get_sample_value(
        "saxgw_sax_admin_rpcs_total", {"sax_method": "List"}
    )
    return value or 0.0


async def test_a_cells_acls_are_renewed_by_one_listing_not_a_list_per_model(
    inproc_cell: InprocCell,
) -> None:
    # Each gateway process read each model's ACLs with a List of its own, once a lifetime: a
    # big cell's models in use were as many admin Lists a second (96 models: ~85 a second,
    # per process), however few calls each had. Twelve models, ACLs kept 0.5 s, called without
    # a pause for 3 s (six lifetimes): 72 Lists before; now about one listing a lifetime. (Kept
    # 0.2 s, a loaded host's listing outlived two lifetimes, and the calls then waited for a
    # read per model, as they must for ACLs that old: 36 Lists were counted once.)
    lifetime, window = 0.5, 3.0
    access = AccessSettings(groups={"team": frozenset({"alice"})}, acl_cache_seconds=lifetime)
    models = [f"/sax/test/renewed{i:02d}" for i in range(12)]
    async with (
        running_gateway(
            inproc_cell.sax_root,
            client=ClientSettings(sax_root=inproc_cell.sax_root, admin_unreachable_after=0.3),
            access=access,
            health_interval=60,
        ) as server,
        aio_channel(server.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        await _publish(stub, *models, wait=False)
        for model in models:
            await stub.WaitForReady(pb.WaitForReadyRequest(model=model), timeout=20)
            await stub.Generate(pb.GenerateRequest(model=model, query="q"), metadata=BOB)

        async def call_all_until(end: float, but: str = "") -> None:
            while time.monotonic() < end:
                for model in (m for m in models if m != but):
                    request = pb.GenerateRequest(model=model, query="q")
                    await stub.Generate(request, timeout=5, metadata=BOB)

        before = _lists(server)
        await call_all_until(time.monotonic() + window)
        lists = _lists(server) - before
        # And the listing renews them: an ACL set at the admin is in force within two
        # lifetimes and a margin, as it was with a List per model.
        async with Client(ClientSettings(sax_root=inproc_cell.sax_root)) as sax:
            await sax.set_acl(models[5], "acl/team", method="lm.generate")
        set_at = time.monotonic()
        while True:
            try:
                await stub.Generate(pb.GenerateRequest(model=models[5], query="q"), metadata=BOB)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                break
            # Two lifetimes (1 s) and room for a loaded host's slow listing (2.5 s, 1 s before);
            # the bad, a listing that renews nothing, never ends this loop.
            assert time.monotonic() - set_at < 2 * lifetime + 2.5
            await call_all_until(time.monotonic() + 0.02, but=models[5])
        # The admin gone, the ACLs at hand stay in force, as those read one by one did.
        await inproc_cell.admin.stop(grace=0)
        await call_all_until(time.monotonic() + 4 * lifetime, but=models[5])
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Generate(pb.GenerateRequest(model=models[5], query="q"), metadata=BOB)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # About one listing a lifetime on a quiet host (7); a loaded one stretches renewals (15,
    # 23 and 36 seen with 0.2 s lifetimes), so the line is half the List per model per
    # lifetime there was (72), which the old way still crosses. The lifetimes are counted as
    # an integer (a window over a lifetime in floats can read 5.999...).
    lifetimes = round(window / lifetime)
    assert lists <= len(models) * lifetimes / 2, lists


async def test_a_cell_listing_shows_a_client_only_the_models_it_may_name(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub,
) -> None:
    # With `addresses` opened to `data` (admin_only: []), a client limited to carol-* listed
    # every model of the cell, with its path, overrides, addresses and ACLs, though GetModel
    # or any call naming one of them was refused; and a page token named a model it may not
    # use. Now a listing shows what GetModel would, its pages and tokens included; an ACL
    # guards methods, not the model's definition, as for GetModel.
    await _publish(stub, MODEL, "/sax/test/carol-a", "/sax/test/carol-b", wait=False)
    await stub.SetAcl(
        pb.SetAclRequest(name="/sax/test/carol-b", method="lm.generate", acl="acl/team"),
        timeout=20,
    )
    whole = await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test"), metadata=CAROL)
    assert [m.model for m in whole.models] == ["/sax/test/carol-a", "/sax/test/carol-b"]
    assert whole.next_page_token == ""
    pages: list[tuple[list[str], str]] = []
    token = ""
    while True:
        request = pb.ListModelsRequest(sax_cell="/sax/test", page_size=1, page_token=token)
        page = await stub.ListModels(request, metadata=CAROL)
        pages.append(([m.model for m in page.models], page.next_page_token))
        if not (token := page.next_page_token):
            break
    assert pages == [
        (["/sax/test/carol-a"], "/sax/test/carol-a"),
        (["/sax/test/carol-b"], ""),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetModel(pb.GetModelRequest(model=MODEL), timeout=20, metadata=CAROL)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Clients without a model list see the whole cell.
    listed = await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test"), metadata=BOB)
    assert [m.model for m in listed.models] == ["/sax/test/carol-a", "/sax/test/carol-b", MODEL]
