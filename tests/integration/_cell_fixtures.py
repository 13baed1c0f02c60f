"""The one embedded-cell fixture machinery of the integration tests: cells over real sockets,
raw Sax stubs.

Two flavours: `embedded_cell` runs every server as its own process (what `kill -9` needs);
`inproc_cell` (and `inproc`, which the client tests' `cell` fixture uses) runs them in the
test's event loop (faster to start, and its model servers' cancellation records are plain
Python).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.cell import AdminServer, Cancellation, CellSettings, EmbeddedCell, ModelServer
from gateway.client import Client, ClientSettings
from gateway.common.storage import open_storage
from tests._grpc import aio_channel

CELL = "/sax/test"
TEST_LM = "sax_gateway.testing.TestLM"
SEED_LM = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"


def fast_settings(tmp_path: Path, *, num_model_servers: int = 2) -> CellSettings:
    """Upstream's timings shrunk 50x, so failures are noticed within about a second."""
    return CellSettings(
        sax_root=str(tmp_path / "root"),
        cell=CELL,
        num_model_servers=num_model_servers,
        poll_interval=0.2,
        server_dead_after=1.0,
        location_watch_interval=0.1,
        rpc_timeout=1.0,
    )


@pytest.fixture
async def embedded_cell(tmp_path: Path) -> AsyncIterator[EmbeddedCell]:
    """An admin and two model servers, each its own process."""
    async with EmbeddedCell(fast_settings(tmp_path), log_level="WARNING") as cell:
        yield cell


@dataclass
class InprocCell:
    """An admin server and model servers of one cell, all in this process."""

    settings: CellSettings
    admin: AdminServer
    model_servers: list[ModelServer]
    cancellations: list[Cancellation] = field(default_factory=list)
    """GenerateStream calls the model servers saw cancelled, in order."""

    @property
    def sax_root(self) -> str:
        return self.settings.sax_root

    @property
    def admin_address(self) -> str:
        return self.admin.address

    async def move_admin(self) -> None:
        """Stops the admin and starts a new one on another port (it rewrites location.proto)."""
        old = self.admin.address
        await self.admin.stop(grace=0)
        # Port 0 may hand the old port out again at once (it did on a loaded machine): then
        # nothing moved, so start again until the address differs.
        for _ in range(10):
            self.admin = AdminServer(self.settings)
            await self.admin.start()
            if self.admin.address != old:
                return
            await self.admin.stop(grace=0)
        raise AssertionError(f"the admin came back on {old} ten times")


@asynccontextmanager
async def inproc(
    settings: CellSettings, num_model_servers: int | None = None
) -> AsyncIterator[InprocCell]:
    """Starts the cell (``settings.num_model_servers`` model servers unless given) and waits
    until every model server has joined."""
    if num_model_servers is not None:
        settings = dataclasses.replace(settings, num_model_servers=num_model_servers)
    admin = AdminServer(settings)
    await admin.start()
    cell = InprocCell(settings=settings, admin=admin, model_servers=[])
    try:
        for _ in range(settings.num_model_servers):
            server = ModelServer(settings, on_cancelled=cell.cancellations.append)
            await server.start()
            cell.model_servers.append(server)
        for server in cell.model_servers:
            # A guard against a hang, not a speed check: generous for a loaded machine.
            await asyncio.wait_for(server.joined.wait(), 60)
        yield cell
    finally:
        for server in cell.model_servers:
            await server.stop(grace=0)
        await cell.admin.stop(grace=0)


@pytest.fixture
async def inproc_cell(tmp_path: Path) -> AsyncIterator[InprocCell]:
    """An admin and two model servers in this event loop."""
    async with inproc(fast_settings(tmp_path)) as cell:
        yield cell


@asynccontextmanager
async def stand_in_admin(
    servicer: admin_pb2_grpc.AdminServicer, sax_root: str, cell: str
) -> AsyncIterator[str]:
    """Serves ``servicer`` as the admin of ``cell`` (``/sax/<name>``) under ``sax_root``, on a
    real socket, with its location.proto written as a Sax admin writes it; yields the address."""
    add = functools.partial(admin_pb2_grpc.add_AdminServicer_to_server, servicer)
    async with stand_in_server(add) as address:
        location = admin_pb2.Location(location=address).SerializeToString()
        await open_storage(sax_root).write(f"{cell.lstrip('/')}/location.proto", location)
        yield address


@asynccontextmanager
async def client_of_stand_in_admin(
    servicer: admin_pb2_grpc.AdminServicer, sax_root: str, cell: str
) -> AsyncIterator[Client]:
    """A Sax client (5 s admin timeout) whose cell ``cell`` has ``servicer`` as its admin."""
    async with (
        stand_in_admin(servicer, sax_root, cell),
        Client(ClientSettings(sax_root=sax_root, admin_timeout=5)) as client,
    ):
        yield client


@asynccontextmanager
async def stand_in_server(add_to: Callable[[grpc.aio.Server], None]) -> AsyncIterator[str]:
    """A grpc.aio server on a free loopback port serving what ``add_to`` adds to it (a
    ``add_..._to_server`` with its servicer); yields its address."""
    server = grpc.aio.server()
    add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=0)


@contextmanager
def stand_in_server_in_a_thread(add_to: Callable[[grpc.aio.Server], None]) -> Iterator[str]:
    """`stand_in_server` on an event loop of its own, in a thread: for a test of what a
    client leaves to later loops, which must see the client's grpc operations alone (a
    server's own, on the same loop, were left to a later one in about 1 round of 50 on a
    loaded machine)."""
    address: concurrent.futures.Future[str] = concurrent.futures.Future()
    stopped = threading.Event()

    async def serve() -> None:
        async with stand_in_server(add_to) as served:
            address.set_result(served)
            while not stopped.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="stand-in server")
    thread.start()
    try:
        yield address.result(timeout=30)
    finally:
        stopped.set()
        thread.join(timeout=30)


class _RefuseEveryCall(grpc.GenericRpcHandler):
    """Answers every method with one status, as a server behind an auth proxy answers a
    caller without credentials (Envoy's 401 and 403 reach grpc as these codes)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
            await context.abort(self._code, "no credentials")

        return grpc.unary_unary_rpc_method_handler(refuse)


def refusing_every_call(code: grpc.StatusCode) -> Callable[[grpc.aio.Server], None]:
    """For `stand_in_server`: an unrelated gRPC server that refuses every call with ``code``."""

    def add_to(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((_RefuseEveryCall(code),))

    return add_to


@asynccontextmanager
async def admin_stub(address: str) -> AsyncIterator[admin_pb2_grpc.AdminAsyncStub]:
    async with aio_channel(address) as channel:
        yield admin_pb2_grpc.AdminStub(channel)


async def publish(
    admin: admin_pb2_grpc.AdminAsyncStub,
    name: str,
    *,
    model_path: str = TEST_LM,
    replicas: int = 1,
    overrides: dict[str, str] | None = None,
    wait: bool = True,
) -> str:
    """Publishes /sax/test/<name> and (by default) waits until all replicas are ready."""
    model_id = f"{CELL}/{name}"
    model = admin_pb2.Model(
        model_id=model_id,
        model_path=model_path,
        checkpoint_path="None",
        requested_num_replicas=replicas,
        overrides=overrides or {},
    )
    await admin.Publish(admin_pb2.PublishRequest(model=model), timeout=5)
    if wait:
        await admin.WaitForReady(
            admin_pb2.WaitForReadyRequest(model_id=model_id, num_replicas=replicas), timeout=10
        )
    return model_id


async def addresses(admin: admin_pb2_grpc.AdminAsyncStub, model_id: str) -> list[str]:
    reply = await admin.List(admin_pb2.ListRequest(model_id=model_id), timeout=5)
    return list(reply.published_models[0].modelet_addresses)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Waits until check() is true; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
