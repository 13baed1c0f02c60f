"""The gateway gRPC server over real sockets, in front of an embedded cell: reflection,
health that follows the cell, deadlines, what a refused call leaves behind, and graceful
shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import shutil
import signal
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.client import Client, ClientSettings
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.launch.processes import free_port
from gateway.service import GatewayServer
from tests._faultproxy import FaultProxy
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import SEED_LM, InprocCell, eventually, stand_in_admin
from tests.integration._gateway_fixtures import running_gateway

TEST_LM = "sax_gateway.testing.TestLM"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: The gateway's source tree.
_OURS = str(Path(str(importlib.import_module("gateway").__file__)).parent)


@pytest.fixture
async def gateway(inproc_cell: InprocCell) -> AsyncIterator[GatewayServer]:
    async with running_gateway(inproc_cell.settings.sax_root, health_interval=0.2) as server:
        yield server


@pytest.fixture
async def stub(gateway: GatewayServer) -> AsyncIterator[gateway_pb2_grpc.SaxGatewayAsyncStub]:
    async with aio_channel(gateway.address) as channel:
        yield gateway_pb2_grpc.SaxGatewayStub(channel)


async def _publish(stub: gateway_pb2_grpc.SaxGatewayAsyncStub, name: str, **overrides: str) -> str:
    model = f"/sax/test/{name}"
    await stub.PublishModel(
        pb.PublishModelRequest(
            model=model, model_path=TEST_LM, checkpoint="None", replicas=1, overrides=overrides
        )
    )
    await stub.WaitForReady(pb.WaitForReadyRequest(model=model), timeout=10)
    return model


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_the_services(gateway: GatewayServer, version: str) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = await _reflect(gateway, version, request)
    assert {s.name for s in responses[0].list_services_response.service} == {
        "saxgateway.v1.SaxGateway",
        "saxgateway.v1.OpenAIGateway",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        ("saxgateway.v1.SaxGateway.Generate", "saxgateway/v1/gateway.proto"),
        ("saxgateway.v1.GenerateRequest", "saxgateway/v1/gateway.proto"),
        ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),
    ],
)
async def test_reflection_finds_methods_and_messages(
    gateway: GatewayServer, version: str, symbol: str, file: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    (response,) = await _reflect(gateway, version, request)
    first = response.file_descriptor_response.file_descriptor_proto[0]
    assert descriptor_pb2.FileDescriptorProto.FromString(first).name == file


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_describes_every_service_it_lists(
    gateway: GatewayServer, version: str
) -> None:
    # What grpcui and Evans do at start: describe every listed service; one that does not
    # resolve (it was v1 reflection itself) stops them with "Symbol not found".
    listed = await _reflect(
        gateway, version, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    for service in listed[0].list_services_response.service:
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service.name)
        (response,) = await _reflect(gateway, version, request)
        assert response.HasField("file_descriptor_response"), (service.name, response)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(proto)
            for proto in response.file_descriptor_response.file_descriptor_proto
        ]
        package, _, name = service.name.rpartition(".")
        assert [s.name for s in files[0].service if files[0].package == package] == [name]


async def test_reflection_reports_unknown_methods(gateway: GatewayServer) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="saxgateway.v1.SaxGateway.NoSuchMethod"
    )
    (response,) = await _reflect(gateway, "v1", request)
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def _reflect(
    gateway: GatewayServer, version: str, request: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """One reflection exchange; v1 and v1alpha share their messages on the wire."""
    async with aio_channel(gateway.address) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return [response async for response in call(iter([request]))]


async def test_health_serves_while_the_cell_answers(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # This gateway has served nothing: without the admin it knows no replicas.
    async with aio_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "saxgateway.v1.SaxGateway"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == SERVING
        await inproc_cell.admin.stop(grace=0)
        for _ in range(100):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            if reply.status == NOT_SERVING:
                break
            await asyncio.sleep(0.1)
        assert reply.status == NOT_SERVING


SERVED = ("", "saxgateway.v1.SaxGateway", "saxgateway.v1.OpenAIGateway")


async def test_health_reports_every_served_service_in_check_watch_and_list(
    gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # OpenAIGateway, which reflection lists and the server serves, was NOT_FOUND to Check and
    # SERVICE_UNKNOWN to Watch; List was INTERNAL ("internal error in sax-gateway").
    async with aio_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in SERVED:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING, service
        watch = health.Watch(health_pb2.HealthCheckRequest(service="saxgateway.v1.OpenAIGateway"))
        assert (await watch.read()).status == SERVING
        listed = await health.List(health_pb2.HealthListRequest(), timeout=10)
        assert {s: r.status for s, r in listed.statuses.items()} == dict.fromkeys(SERVED, SERVING)
        # Each follows the server's status: the cell gone, all are NOT_SERVING together.
        await inproc_cell.admin.stop(grace=0)
        assert (await asyncio.wait_for(watch.read(), 30)).status == NOT_SERVING
        watch.cancel()
        listed = await health.List(health_pb2.HealthListRequest(), timeout=10)
        statuses = {s: r.status for s, r in listed.statuses.items()}
        assert statuses == dict.fromkeys(SERVED, NOT_SERVING)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health.Check(health_pb2.HealthCheckRequest(service="saxgateway.v1.Nothing"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == (
        'no such service: health is reported for "" (the server), saxgateway.v1.SaxGateway'
        " and saxgateway.v1.OpenAIGateway"
    )


class HungAdmin(admin_pb2_grpc.AdminServicer):
    """An admin that takes every List and never answers it."""

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        await asyncio.sleep(3600)
        return admin_pb2.ListResponse()


async def test_health_is_not_serving_before_the_first_probe_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc's health servicer starts SERVING: while the first probe waited for a hung admin
    # (seconds), Envoy counted a gateway that knew nothing healthy and `saxgw up` said Ready.
    # That no admin answers is a WARNING: it was an INFO, and for a hung admin (its address
    # watches' long polls just run out) the only line in the gateway's log.
    caplog.set_level(logging.INFO, logger="gateway.service")
    sax_root, port = str(tmp_path / "root"), free_port()
    settings = GatewaySettings(client=ClientSettings(sax_root=sax_root), port=port)
    async with stand_in_admin(HungAdmin(), sax_root, "/sax/hung") as hung:  # type: ignore[abstract]
        starting = asyncio.create_task(GatewayServer.start(settings))
        try:
            async with aio_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest(service="")
                reply = await health.Check(request, wait_for_ready=True, timeout=10)
                assert not starting.done()  # the first probe is still waiting for the admin
                assert reply.status == NOT_SERVING
                named = health_pb2.HealthCheckRequest(service="saxgateway.v1.SaxGateway")
                assert (await health.Check(named)).status == NOT_SERVING
        finally:
            server = await starting
            await server.stop(grace=0)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "health: " in r.getMessage()]
    assert lines[0] == (
        "WARNING",
        f"health: NOT_SERVING (no admin answers: the admin server of cell /sax/hung at {hung} "
        "is unreachable: it has answered nothing to List for 5 s; no replicas are on record)",
    ), lines


async def test_health_answers_with_the_first_cell_that_answers(inproc_cell: InprocCell) -> None:
    # Of two cells, the first (by name) has a hung admin: each probe asked the cells one by
    # one, so it waited the probe's whole timeout (5 s) for that one before asking the cell
    # that answers, every probe; a gateway starting meanwhile was NOT_SERVING for those 5 s.
    # A probe's timeout is its interval (5 s by default); 20 s here, so that the bad (the start
    # and a whole timeout) is far from the good (the start and one probe: about a second on a
    # loaded host) and the bound (10 s, 4 s before) from both.
    sax_root = inproc_cell.settings.sax_root
    async with stand_in_admin(HungAdmin(), sax_root, "/sax/a"):  # type: ignore[abstract]
        started = asyncio.get_running_loop().time()
        gateway = running_gateway(sax_root, health_interval=20.0)
        async with gateway as server, aio_channel(server.address) as channel:
            took = asyncio.get_running_loop().time() - started
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="")
            )
    assert reply.status == SERVING
    assert took < 10.0  # the start and one probe; it was the start and the probe's timeout


async def test_each_cells_admin_is_reported_up_or_not_in_the_metrics(
    inproc_cell: InprocCell,
) -> None:
    # An operator with several cells behind one gateway saw nothing in /metrics when one
    # cell's admin hung: health stays SERVING while any answers, and no series said which.
    sax_root = inproc_cell.settings.sax_root
    async with (
        stand_in_admin(HungAdmin(), sax_root, "/sax/a"),  # type: ignore[abstract]
        running_gateway(sax_root, health_interval=0.2) as server,
    ):
        assert server.metrics is not None
        registry = server.metrics.registry

        def reads(cell: str, value: float | None) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return registry.get_sample_value("saxgw_sax_admin_up", {"sax_cell": cell}) == value

            return check

        await eventually(reads("/sax/a", 0.0))
        assert await reads("/sax/test", 1.0)()
        await inproc_cell.admin.stop(grace=0)
        await eventually(reads("/sax/test", 0.0))
        shutil.rmtree(Path(sax_root) / "sax" / "a")  # the cell is removed: its series goes
        await eventually(reads("/sax/a", None))


async def test_a_silent_admin_connection_is_dropped_and_the_watches_read_the_admin_again(
    inproc_cell: InprocCell, tmp_path: Path
) -> None:
    # A NAT or load balancer that forgot the admin's connection drops its packets: no FIN or
    # RST comes. The health probe's List ran out as "did not finish within its deadline" and
    # left the connection, so the models' address watches polled on it for as long as the
    # kernel kept it (about 15 minutes) and missed every change the admin made meanwhile.
    proxy = FaultProxy(inproc_cell.admin_address)
    await proxy.start()
    root = tmp_path / "through-proxy"  # a SAX_ROOT whose cell's admin is behind the proxy
    (root / "sax" / "test").mkdir(parents=True)
    (root / "sax" / "test" / "location.proto").write_bytes(
        admin_pb2.Location(location=proxy.address).SerializeToString()
    )
    model = "/sax/test/followed"
    client = ClientSettings(sax_root=str(root), admin_unreachable_after=1.0)
    try:
        async with (
            Client(ClientSettings(sax_root=inproc_cell.sax_root)) as direct,
            running_gateway(str(root), client, health_interval=0.2) as server,
            aio_channel(server.address) as channel,
        ):
            await direct.publish(model, TEST_LM, "None", 1)
            await direct.wait_for_ready(model, 1, timeout=10)
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            request = pb.GenerateRequest(model=model, query="q")
            assert (await stub.Generate(request, timeout=10)).texts[0].text == "q"
            assert server.metrics is not None
            registry = server.metrics.registry

            def replicas(count: float) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    labels = {"gen_ai_request_model": model}
                    return registry.get_sample_value("saxgw_model_replicas", labels) == count

                return check

            await eventually(replicas(1.0))
            proxy.silence_open()
            await direct.update(model, num_replicas=2)
            await direct.wait_for_ready(model, 2, timeout=10)
            await eventually(replicas(2.0), timeout=15.0)
    finally:
        await proxy.close()


async def test_health_serves_while_replicas_on_record_outlive_the_admin(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub, gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    model = await _publish(stub, "outlives")
    request = pb.GenerateRequest(model=model, query="still here")
    assert (await stub.Generate(request)).texts
    await inproc_cell.admin.stop(grace=0)
    async with aio_channel(gateway.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        # Ten probes (every 0.2 s) with the admin gone: SERVING all along, and data calls work.
        for _ in range(20):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == SERVING
            await asyncio.sleep(0.1)
    assert [t.text for t in (await stub.Generate(request)).texts] == ["still here"]


async def test_health_serves_while_the_admin_answers_but_sax_root_does_not(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub, gateway: GatewayServer, inproc_cell: InprocCell
) -> None:
    # A GCS outage (or an unmounted SAX_ROOT) with the admin up: the probe listed the cells
    # from storage first, found none, and a gateway that had served no data call (so held no
    # replicas) turned NOT_SERVING: Kubernetes took it out although every call would work.
    await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test"))  # connects to the admin
    root = Path(inproc_cell.settings.sax_root)
    moved = root.with_name("moved-away")
    root.rename(moved)
    try:
        async with aio_channel(gateway.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(10):  # five probes, every 0.2 s
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
                assert reply.status == SERVING
                await asyncio.sleep(0.1)
        listed = await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test"))
        assert listed.sax_cell == "/sax/test"
    finally:
        moved.rename(root)


async def test_health_watch_reports_not_serving_and_ends_when_the_gateway_stops(
    inproc_cell: InprocCell,
) -> None:
    # A Watch never ends by itself: it held the stop for the whole grace period (then ended
    # with grpc's "Cancelling all calls"), so one client's health watch (grpc's client-side
    # health checking keeps one open) made every stop of an idle gateway last that long.
    client = ClientSettings(sax_root=inproc_cell.settings.sax_root)
    server = await GatewayServer.start(GatewaySettings(client=client, health_interval=0.2))
    async with aio_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [
            health.Watch(health_pb2.HealthCheckRequest(service=service))
            for service in ("saxgateway.v1.SaxGateway", "saxgateway.v1.Nothing")
        ]
        statuses = [(await watch.read()).status for watch in watches]
        assert statuses == [SERVING, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN]
        started = asyncio.get_running_loop().time()
        stopping = asyncio.create_task(server.stop(grace=20))
        assert (await watches[0].read()).status == NOT_SERVING
        for watch in watches:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(watch.read(), 5)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ended.value.details() == "the gateway is stopping"
        await stopping
    # Ended at once (a second or less, loaded); held, the stop lasted its grace (20 s).
    assert asyncio.get_running_loop().time() - started < 10


async def test_a_health_watch_ends_when_a_stream_may_last_no_longer(tmp_path: Path) -> None:
    # Nothing ended a Watch: through Envoy, limits.max_stream_duration (an hour) passed, and
    # Envoy's backstop reset it 5 s later: gRPC clients got INTERNAL (RST_STREAM), as for a
    # server failure, and the access log UNKNOWN.
    async with (
        running_gateway(str(tmp_path), max_watch_duration=1) as server,
        aio_channel(server.address) as channel,
    ):
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(watch.read(), 5)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert ended.value.details() == (
        "a health watch lasts at most 1 s (limits.max_stream_duration); watch again"
    )


async def test_health_watch_streams_count_against_the_clients_stream_limit(
    tmp_path: Path,
) -> None:
    # Health/Watch is open to anonymous callers and lasts until they leave: without a limit,
    # one client could hold any number of them.
    async with (
        running_gateway(str(tmp_path), max_streams_per_client=1) as server,
        aio_channel(server.address) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        first = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await first.read()).status == NOT_SERVING
        second = health.Watch(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await second.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()
        third = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await third.read()).status == NOT_SERVING  # a closed stream frees its slot
        third.cancel()


async def test_a_wait_for_ready_counts_with_the_clients_streams(tmp_path: Path) -> None:
    # A WaitForReady lasts until its replicas are up or its deadline: a client could hold
    # any number of them, each a call in the gateway and in Envoy's budget.
    async with (
        running_gateway(str(tmp_path), max_streams_per_client=1) as server,
        aio_channel(server.address) as channel,
    ):
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == NOT_SERVING
        wait = pb.WaitForReadyRequest(model="/sax/test/waited")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway_pb2_grpc.SaxGatewayStub(channel).WaitForReady(wait, timeout=10)
        watch.cancel()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "client 127.0.0.1 already has 1 streams or waits open, the limit per client;"
        " close some first"
    )


async def test_health_is_not_serving_without_a_cell(tmp_path: Path) -> None:
    async with (
        running_gateway(str(tmp_path)) as server,
        aio_channel(server.address) as channel,
    ):
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="saxgateway.v1.SaxGateway")
        )
    assert reply.status == NOT_SERVING


async def test_every_method_is_served_without_registering_it_with_grpcs_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method registered with grpc's core costs every call a grpc.aio server takes (it waits
    on one pending request per registered method); all of them are served as generic ones."""
    registered: list[str] = []
    aio_server = importlib.import_module("grpc.aio._server").Server  # grpc.aio.server()'s class
    original = aio_server.add_registered_method_handlers

    def spy(self: grpc.aio.Server, service: str, handlers: object) -> None:
        registered.append(service)
        original(self, service, handlers)

    monkeypatch.setattr(aio_server, "add_registered_method_handlers", spy)
    async with (
        running_gateway(str(tmp_path)) as server,
        aio_channel(server.address) as channel,
    ):
        info = await gateway_pb2_grpc.SaxGatewayStub(channel).GetInfo(pb.GetInfoRequest())
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        listed = await _reflect(
            server, "v1", reflection_pb2.ServerReflectionRequest(list_services="")
        )
    assert info.version
    assert health.status in (SERVING, NOT_SERVING)
    assert "saxgateway.v1.OpenAIGateway" in {
        s.name for s in listed[0].list_services_response.service
    }
    assert registered == []


@contextmanager
def collector_off() -> Iterator[list[str]]:
    """Runs the block with the garbage collector off; then lists (file:function) the frames
    of the gateway's code that only a collection frees and that hold a ``GenerateRequest``
    (the gateway's own or Sax's)."""
    gc.collect()
    gc.disable()
    kept: list[str] = []
    try:
        yield kept
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kept += (
            f"{o.f_code.co_filename}:{o.f_code.co_name}"
            for o in gc.garbage
            if isinstance(o, types.FrameType)
            and o.f_code.co_filename.startswith(_OURS)
            and any(type(v).__name__ == "GenerateRequest" for v in o.f_locals.values())
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_refused_call_leaves_no_frame_of_its_handling_to_the_garbage_collector(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub,
) -> None:
    """Its request (up to 32 MiB, twice over: the message and a field read from it) is freed
    as the call ends, not at the collector's next full pass."""
    model = await _publish(stub, "refusing", text="a b c")
    cuts = await _publish(stub, "cut", text="a b c", fail_after_tokens="1", fail_code="INTERNAL")
    bogus = {"bogus": struct_pb2.Value(number_value=1)}
    refused = {
        "by the gateway": pb.GenerateRequest(model=model, query=""),
        "by the model server": pb.GenerateRequest(model=model, query="q", extra_inputs=bogus),
    }
    cut = pb.GenerateStreamRequest(model=cuts, query="q")
    with collector_off() as kept:
        # A few of each: grpc lets go of a call's state some time after the call ends (the
        # cycles of the last one or two were not yet garbage when the block ended).
        for _ in range(3):
            for request in refused.values():
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stub.Generate(request)
                assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                async for _ in stub.GenerateStream(cut):
                    pass
            assert failure.value.code() == grpc.StatusCode.INTERNAL
        del failure
    assert kept == []


async def test_a_call_its_caller_leaves_leaves_no_frame_of_its_handling_to_the_garbage_collector(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub,
) -> None:
    """As a refused one: grpc cancels the handler, and the cancellation passed on up the
    layers held their frames in a cycle (a browser tab closed on a stream, a client's own
    timeout)."""
    model = await _publish(stub, "left", text="a b c d e f g h", delay_ms="300")
    with collector_off() as kept:
        for _ in range(3):
            call = stub.Generate(pb.GenerateRequest(model=model, query="q"))
            await asyncio.sleep(0.2)  # under way: its first token is 0.3 s out
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            stream = stub.GenerateStream(pb.GenerateStreamRequest(model=model, query="q"))
            await stream.read()
            stream.cancel()
        await asyncio.sleep(0.5)  # grpc cancels the handlers once the cancellations arrive
    assert kept == []


async def test_shorter_client_deadline_wins(stub: gateway_pb2_grpc.SaxGatewayAsyncStub) -> None:
    model = await _publish(stub, "slowpoke", text="a b c d e f", delay_ms="200")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=0.5)
    # Untimed: grpc's client ends the call at its own 0.5 s whatever the gateway does, so a
    # bound on it (1.5 s stood here) timed only a loaded host.
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_concurrent_calls_share_one_client(
    stub: gateway_pb2_grpc.SaxGatewayAsyncStub,
) -> None:
    model = await _publish(stub, "busy", text="x y")
    replies = await asyncio.gather(
        *(stub.Generate(pb.GenerateRequest(model=model, query="q")) for _ in range(50))
    )
    assert {r.texts[0].text for r in replies} == {"x y"}


async def test_sigterm_finishes_in_flight_calls(inproc_cell: InprocCell) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "gateway",
        "--sax-root", inproc_cell.settings.sax_root, "--port", str(port), "--grace-period", "5",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert b"listening" in await asyncio.wait_for(proc.stdout.readline(), 20)
        async with aio_channel(f"127.0.0.1:{port}") as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            model = await _publish(stub, "graceful", text="one two three four", delay_ms="250")
            in_flight = asyncio.ensure_future(
                stub.Generate(pb.GenerateRequest(model=model, query="q"))
            )

            async def decoding() -> bool:  # the call is in a model server: in flight for sure
                return any(
                    stats.pending_reqs
                    for server in inproc_cell.model_servers
                    for loaded in server.loaded.status(failures=False, method_stats=True)
                    if loaded.model_key == model
                    for stats in loaded.method_stats
                )

            await eventually(decoding)
            proc.send_signal(signal.SIGTERM)
            reply = await asyncio.wait_for(in_flight, 10)
            assert reply.texts[0].text == "one two three four"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_cell_listing_over_the_message_limit_comes_in_pages(
    inproc_cell: InprocCell,
) -> None:
    # A cell's listing holds every model's definition: hundreds of models with large
    # overrides (140 of 64 x 4 KiB: 36 MiB) outgrew the 32 MiB limit, and neither /listall nor
    # `saxgw ls CELL` could list the cell at all (and the 400 said "ask the model for less
    # (fewer or shorter samples ...)", of a call that names no model). Three models of 16 KiB
    # of overrides against a 40 KiB limit stand in for them.
    limit = 40 << 10
    models = [f"/sax/test/big{i}" for i in range(3)]
    async with (
        running_gateway(inproc_cell.sax_root, max_message_bytes=limit) as gateway,
        aio_channel(gateway.address) as channel,
    ):
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for model in models:
            request = pb.PublishModelRequest(
                model=model, model_path=SEED_LM, checkpoint="None", replicas=0
            )
            request.overrides.update({f"key_{i}": "v" * 4000 for i in range(4)})
            await stub.PublishModel(request)
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test"))
        # A page at a time, each page's token the next one's start.
        pages: list[list[str]] = []
        token = ""
        while not pages or token:
            page = await stub.ListModels(
                pb.ListModelsRequest(sax_cell="/sax/test", page_size=2, page_token=token)
            )
            pages.append([m.model for m in page.models])
            token = page.next_page_token
        for token in ("/sax/other/big0", "nope"):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.ListModels(pb.ListModelsRequest(sax_cell="/sax/test", page_token=token))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (
                bad.value.details() == f"page_token: {token!r} is no token of a page of /sax/test"
            )
        # `saxgw ls CELL` asks in pages too.
        cli = [sys.executable, "-m", "gateway.cli", "--gateway", gateway.address, "ls", "/sax/test"]
        listed = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True)
    assert pages == [models[:2], models[2:]]
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    size = int((failure.value.details() or "").split()[4])
    assert size > limit
    assert failure.value.details() == (
        f"the reply would be {size} bytes, over this gateway's limit of {limit} bytes: the"
        " definitions of the cell's models (their overrides, checkpoints) are too large to list"
        " at once: ask for them a page at a time (page_size, page_token)"
    )
    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
    assert listed.stdout.splitlines() == ["#  MODEL ID", "0  big0", "1  big1", "2  big2"]
