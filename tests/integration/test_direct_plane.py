"""Direct mode's control plane against real admins: a cell whose admin hangs keeps its routes
and holds no other cell's changes back (tests/e2e/test_direct.py runs it under Envoy)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.client import Client, ClientSettings
from gateway.common.rpc import Context
from gateway.edge import parse_edge
from gateway.launch.direct import DirectFiles
from gateway.launch.direct._plane import Plane
from tests._wait import until
from tests.integration._cell_fixtures import stand_in_admin
from tests.integration._client_fixtures import RunningCell, publish_ready

EDGE = parse_edge({"direct": {"generate": True}})


class _HungAdmin(admin_pb2_grpc.AdminServicer):
    """An admin that takes each List and answers none until released (a stopped process, as
    the client sees it: its connection up, no answer)."""

    def __init__(self) -> None:
        self.held = 0
        self.ended = 0
        self.released = asyncio.Event()

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        self.held += 1
        try:
            await self.released.wait()
            return admin_pb2.ListResponse()
        finally:
            self.ended += 1


def _routed(files: DirectFiles) -> list[str]:
    """The models the RDS file routes directly."""
    table = json.loads(files.routes.read_text())["resources"][0]
    names = [r.get("name", "") for r in table["virtual_hosts"][0]["routes"]]
    return [n.removeprefix("direct ") for n in names if n.startswith("direct ")]


async def test_a_hung_admin_holds_no_other_cells_changes_back(
    cell: RunningCell, tmp_path: Path
) -> None:
    """Listed one cell after another, a hung admin's List held every other cell's listing
    until the client gave it up (``admin_unreachable_after``, 5 s by default, a minute here):
    a model published beside it went direct only then, each round. Listed concurrently, the
    model's route is written while the hung listing is still in flight."""
    hung = _HungAdmin()  # type: ignore[abstract]
    files = DirectFiles(tmp_path / "direct")
    files.directory.mkdir()
    catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "gateway_grpc"}}
    files.write_base({"name": "routes", "virtual_hosts": [{"name": "all", "routes": [catch_all]}]})
    files.write_first()
    settings = ClientSettings(sax_root=cell.sax_root, admin_unreachable_after=60)
    async with (
        stand_in_admin(hung, cell.sax_root, "/sax/hung"),
        Client(settings) as client,
    ):
        plane = asyncio.create_task(Plane(client, files, EDGE, 60.0).run())
        try:
            await until("the hung admin has a List", lambda: hung.held == 1, 20)
            model = await publish_ready(client, "beside-hung", replicas=1)
            await until(f"{model} is routed directly", lambda: model in _routed(files), 20)
            assert (hung.held, hung.ended) == (1, 0)  # its one listing still in flight
        finally:
            plane.cancel()
            hung.released.set()
