"""sax.Modelet over gRPC: how an admin drives this model server."""

from __future__ import annotations

import time

import grpc
from saxml.protobuf import modelet_pb2, modelet_pb2_grpc

from gateway.cell._errors import cell_error, unary_errors
from gateway.cell.modelserver.loaded import LoadedModels
from gateway.common.rpc import PROBE_KEY, Context, metadata_value


class ModeletServicer(modelet_pb2_grpc.ModeletServicer):
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded
        #: time.monotonic() of the last GetStatus call: an admin that stops polling has
        #: forgotten this server (it restarted or dropped us), so the join loop re-joins.
        self.last_polled = time.monotonic()

    @unary_errors
    async def Load(
        self, request: modelet_pb2.LoadRequest, context: Context
    ) -> modelet_pb2.LoadResponse:
        await self._loaded.load(request)
        return modelet_pb2.LoadResponse()

    @unary_errors
    async def UpdateLoaded(
        self, request: modelet_pb2.UpdateLoadedRequest, context: Context
    ) -> modelet_pb2.UpdateLoadedResponse:
        self._loaded.update(request.model_key, request.checkpoint_path)
        return modelet_pb2.UpdateLoadedResponse()

    @unary_errors
    async def Unload(
        self, request: modelet_pb2.UnloadRequest, context: Context
    ) -> modelet_pb2.UnloadResponse:
        self._loaded.unload(request.model_key)
        return modelet_pb2.UnloadResponse()

    @unary_errors
    async def GetStatus(
        self, request: modelet_pb2.GetStatusRequest, context: Context
    ) -> modelet_pb2.GetStatusResponse:
        if metadata_value(context, PROBE_KEY) is None:  # a Sax client's probe is no poll
            self.last_polled = time.monotonic()
        return modelet_pb2.GetStatusResponse(
            models=self._loaded.status(
                failures=request.include_failure_reasons,
                method_stats=request.include_method_stats,
            ),
            server_status=modelet_pb2.GetStatusResponse.ServerStatus(
                state=modelet_pb2.GetStatusResponse.ServerStatus.ACTIVE
            ),
        )

    @unary_errors
    async def WakeUp(
        self, request: modelet_pb2.WakeUpRequest, context: Context
    ) -> modelet_pb2.WakeUpResponse:
        return modelet_pb2.WakeUpResponse()  # CPU servers never sleep

    @unary_errors
    async def Export(
        self, request: modelet_pb2.ExportRequest, context: Context
    ) -> modelet_pb2.ExportResponse:
        raise cell_error(grpc.StatusCode.UNIMPLEMENTED, "the embedded cell cannot export models")

    @unary_errors
    async def Save(
        self, request: modelet_pb2.SaveRequest, context: Context
    ) -> modelet_pb2.SaveResponse:
        raise cell_error(grpc.StatusCode.UNIMPLEMENTED, "the embedded cell cannot save models")
