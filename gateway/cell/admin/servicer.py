"""sax.Admin over gRPC: unpack, validate, call the manager, reply."""

from __future__ import annotations

from saxml.protobuf import admin_pb2 as pb
from saxml.protobuf import admin_pb2_grpc

from gateway.cell import joined
from gateway.cell._errors import unary_errors
from gateway.cell.admin import validation
from gateway.cell.admin.manager import Manager
from gateway.common.revision import EXPECT_KEY
from gateway.common.rpc import Context


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, *, manager: Manager, cell: str, server_id: str) -> None:
        self._manager = manager
        self._cell = cell
        self._server_id = server_id

    @unary_errors
    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        validation.check_model(request.model, self._cell)
        await self._manager.publish(request.model)
        return pb.PublishResponse()

    @unary_errors
    async def Update(self, request: pb.UpdateRequest, context: Context) -> pb.UpdateResponse:
        # The rest is checked against the definition it replaces (`validation.check_update`).
        validation.check_model_in_cell(request.model.model_id, self._cell)
        expect = dict(context.invocation_metadata() or ()).get(EXPECT_KEY)
        await self._manager.update(request.model, expect=str(expect) if expect else None)
        return pb.UpdateResponse()

    @unary_errors
    async def Unpublish(
        self, request: pb.UnpublishRequest, context: Context
    ) -> pb.UnpublishResponse:
        validation.check_model_in_cell(request.model_id, self._cell)
        await self._manager.unpublish(request.model_id)
        return pb.UnpublishResponse()

    @unary_errors
    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        if request.model_id:
            validation.check_model_in_cell(request.model_id, self._cell)
        return pb.ListResponse(published_models=self._manager.list_models(request.model_id))

    @unary_errors
    async def Stats(self, request: pb.StatsRequest, context: Context) -> pb.StatsResponse:
        if request.model_id:
            validation.check_model_in_cell(request.model_id, self._cell)
        return self._manager.stats(request.model_id)

    @unary_errors
    async def WatchLoc(self, request: pb.WatchLocRequest, context: Context) -> pb.WatchLocResponse:
        validation.check_watch(request)
        # A caller that last talked to another incarnation gets the full set at once (upstream
        # restarts it from seqno 0, which can block on a model that has no servers yet).
        result = await self._manager.watch(
            request.model_id,
            full=request.admin_server_id != self._server_id,
            seqno=request.seqno,
        )
        return pb.WatchLocResponse(admin_server_id=self._server_id, result=result.to_proto())

    @unary_errors
    async def WaitForReady(
        self, request: pb.WaitForReadyRequest, context: Context
    ) -> pb.WaitForReadyResponse:
        validation.check_model_in_cell(request.model_id, self._cell)
        await self._manager.wait_for_ready(request.model_id, request.num_replicas)
        return pb.WaitForReadyResponse()

    @unary_errors
    async def Join(self, request: pb.JoinRequest, context: Context) -> pb.JoinResponse:
        validation.check_join(request, joined.cell_of(context.invocation_metadata()), self._cell)
        if await self._manager.join(request):
            context.set_trailing_metadata(((joined.KEY, joined.TOOK_IN),))
        return pb.JoinResponse()
