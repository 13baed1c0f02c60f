"""A model server: sax.Modelet plus the LM, vision, audio and custom data services on one port,
kept joined to the cell's admin.

    server = ModelServer(settings, port=0)
    await server.start()         # serves, then joins in the background
    await server.joined.wait()
    server.loaded.cancellations("/sax/test/foo")
    await server.stop()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from saxml.protobuf import (
    admin_pb2,
    audio_pb2_grpc,
    custom_pb2_grpc,
    lm_pb2_grpc,
    modelet_pb2_grpc,
    multimodal_pb2_grpc,
    vision_pb2_grpc,
)

from gateway.cell import _grpc_server
from gateway.cell.models import MODEL_PATHS
from gateway.cell.modelserver.data import (
    AudioServicer,
    CustomServicer,
    LMServicer,
    VisionServicer,
)
from gateway.cell.modelserver.join import JoinLoop
from gateway.cell.modelserver.loaded import Cancellation, LoadedModels
from gateway.cell.modelserver.modelet import ModeletServicer
from gateway.cell.modelserver.multimodal import MultimodalServicer
from gateway.cell.settings import CellSettings
from gateway.common.rpc import add_servicer

_log = logging.getLogger("gateway.cell.modelserver")


class ModelServer:
    def __init__(
        self,
        settings: CellSettings,
        *,
        port: int = 0,
        on_joined: Callable[[str], None] | None = None,
        on_cancelled: Callable[[Cancellation], None] | None = None,
    ) -> None:
        self._settings = settings
        self._port = port
        self._on_joined = on_joined
        self.loaded = LoadedModels(seed=settings.seed, on_cancelled=on_cancelled)
        self._modelet = ModeletServicer(loaded=self.loaded)
        self._server: grpc.aio.Server | None = None
        self._join: JoinLoop | None = None
        self.address = ""

    @property
    def joined(self) -> asyncio.Event:
        if self._join is None:
            raise RuntimeError("the model server is not started")
        return self._join.joined

    async def start(self) -> None:
        server = _grpc_server.new_server(_grpc_server.MODEL_SERVER_STOPPING)
        port = _grpc_server.bind(server, self._settings.host, self._port)
        self.address = _grpc_server.address(self._settings.host, port)
        loaded = self.loaded
        add_servicer(server, modelet_pb2_grpc.add_ModeletServicer_to_server, self._modelet)
        add_servicer(server, lm_pb2_grpc.add_LMServiceServicer_to_server, LMServicer(loaded=loaded))
        add_servicer(
            server,
            vision_pb2_grpc.add_VisionServiceServicer_to_server,
            VisionServicer(loaded=loaded),
        )
        add_servicer(
            server, audio_pb2_grpc.add_AudioServiceServicer_to_server, AudioServicer(loaded=loaded)
        )
        add_servicer(
            server,
            custom_pb2_grpc.add_CustomServiceServicer_to_server,
            CustomServicer(loaded=loaded),
        )
        add_servicer(
            server,
            multimodal_pb2_grpc.add_MultimodalServiceServicer_to_server,
            MultimodalServicer(loaded=loaded),
        )
        await server.start()
        self._server = server
        _log.info("model server listening on %s", self.address)
        self._join = JoinLoop(
            settings=self._settings,
            request=admin_pb2.JoinRequest(
                address=self.address,
                model_server=admin_pb2.ModelServer(
                    chip_type=admin_pb2.ModelServer.CHIP_TYPE_CPU,
                    chip_topology=admin_pb2.ModelServer.CHIP_TOPOLOGY_1,
                    servable_model_paths=list(MODEL_PATHS),
                ),
            ),
            last_polled=lambda: self._modelet.last_polled,
            on_joined=self._on_joined,
        )
        self._join.start()

    async def stop(self, grace: float = _grpc_server.STOP_GRACE) -> None:
        if self._join is not None:
            await self._join.stop()
        if self._server is not None:
            await _grpc_server.stop(self._server, grace)
            self._server = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
