"""The client's observer hooks over real gRPC: every attempt's metadata reaches the model
server, and the attempt learns how the RPC ended and what it cost (``query_cost_v0``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from functools import partial
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import lm_pb2, lm_pb2_grpc

from gateway.cell import AdminServer
from gateway.client import (
    Attempt,
    CallOptions,
    Client,
    ClientSettings,
    Observer,
    UnavailableError,
    query_cost_ms,
)
from gateway.common.rpc import Context
from tests.integration._cell_fixtures import stand_in_server
from tests.integration._client_fixtures import RunningCell, publish_ready

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class RecordingLM(lm_pb2_grpc.LMServiceServicer):
    """Answers like an upstream model server that reports a query cost; keeps the metadata."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str | bytes]] = []

    async def Generate(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> lm_pb2.GenerateResponse:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        context.set_trailing_metadata((("query_cost_v0", "42"),))
        return lm_pb2.GenerateResponse(texts=[lm_pb2.DecodedText(text="hi", score=-1.0)])

    async def GenerateStream(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> AsyncIterator[lm_pb2.GenerateStreamResponse]:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        yield lm_pb2.GenerateStreamResponse(items=[lm_pb2.GenerateStreamItem(text="a")])
        context.set_trailing_metadata((("query_cost_v0", "7"),))


class _Attempt(Attempt):
    __slots__ = ("ended", "metadata")

    def __init__(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.metadata = metadata
        self.ended: list[tuple[grpc.StatusCode, int | None]] = []

    def end(
        self, code: grpc.StatusCode, trailing: Collection[tuple[str, str | bytes]] | None
    ) -> None:
        self.ended.append((code, query_cost_ms(trailing)))


class Recorder(Observer):
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, str, int, _Attempt]] = []
        self.failovers: list[tuple[str, str, grpc.StatusCode]] = []
        self.addresses: list[tuple[str, list[str]]] = []
        self.gone: list[str] = []

    def model_gone(self, model_id: str) -> None:
        self.gone.append(model_id)

    def failover(self, model_id: str, address: str, code: grpc.StatusCode) -> None:
        self.failovers.append((model_id, address, code))

    def addresses_changed(self, model_id: str, addresses: Sequence[str]) -> None:
        self.addresses.append((model_id, list(addresses)))

    def attempt(self, target: str, method: str, address: str, number: int) -> Attempt:
        attempt = _Attempt((("traceparent", TRACEPARENT),))
        self.attempts.append((target, method, address, number, attempt))
        return attempt


@pytest.fixture
async def lm_server() -> AsyncIterator[tuple[str, RecordingLM]]:
    # Only the RPCs under test: the .pyi marks every RPC abstract, while at run time the rest
    # answer UNIMPLEMENTED from the generated base class.
    servicer = RecordingLM()  # type: ignore[abstract]
    add = partial(lm_pb2_grpc.add_LMServiceServicer_to_server, servicer)
    async with stand_in_server(add) as address:
        yield address, servicer


async def test_attempts_carry_metadata_and_learn_the_cost(
    lm_server: tuple[str, RecordingLM], tmp_path: Path
) -> None:
    address, servicer = lm_server
    observer = Recorder()
    settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=address)
    async with Client(settings, observer=observer) as client:
        assert await client.lm_generate("/sax/test/lm", "hello") == [("hi", -1.0)]
        items = [i async for i in client.lm_generate_stream("/sax/test/lm", "hello")]

    assert [[i.text for i in step] for step in items] == [["a"]]
    assert [m["traceparent"] for m in servicer.metadata] == [TRACEPARENT, TRACEPARENT]
    assert [(t, m, a, n) for t, m, a, n, _ in observer.attempts] == [
        ("/sax/test/lm", "lm.Generate", address, 1),
        ("/sax/test/lm", "lm.GenerateStream", address, 1),
    ]
    assert [a.ended for *_, a in observer.attempts] == [
        [(grpc.StatusCode.OK, 42)],
        [(grpc.StatusCode.OK, 7)],
    ]


async def test_a_failed_attempt_reports_its_code(tmp_path: Path) -> None:
    observer = Recorder()
    # Nothing listens there: the one replica is UNAVAILABLE until the deadline.
    settings = ClientSettings(sax_root=str(tmp_path), proxy_addr="127.0.0.1:1", fail_fast=True)
    async with Client(settings, observer=observer) as client:
        with pytest.raises(UnavailableError):
            await client.lm_generate("/sax/test/lm", "hello")
    assert observer.attempts
    assert observer.attempts[0][4].ended == [(grpc.StatusCode.UNAVAILABLE, None)]


def test_query_cost_is_read_as_upstream_writes_it() -> None:
    assert query_cost_ms((("query_cost_v0", "12"),)) == 12
    assert query_cost_ms((("other", "1"),)) is None
    assert query_cost_ms(None) is None
    assert query_cost_ms((("query_cost_v0", "not a number"),)) is None


async def test_failovers_and_address_changes_are_reported(cell: RunningCell) -> None:
    observer = Recorder()
    settings = ClientSettings(sax_root=cell.sax_root, admin_timeout=10.0)
    async with Client(settings, observer=observer) as client:
        lm = await publish_ready(client, "observed")
        await client.lm_generate(lm, "x", CallOptions(timeout=10))  # the table is open
        everyone = sorted(s.address for s in cell.model_servers)
        assert (lm, everyone) in observer.addresses
        dead = cell.model_servers[1].address
        # The admin stops first: it drops a refused server at once, and the client could hear
        # of that before any call tried the replica. Now only the calls can find out.
        await cell.admin.stop(grace=0)
        await cell.model_servers[1].stop(grace=0)
        for _ in range(4):  # round robin: some calls pick the stopped replica first
            await client.lm_generate(lm, "x", CallOptions(timeout=10))
        assert (lm, dead, grpc.StatusCode.UNAVAILABLE) in observer.failovers
        # A new admin hears from the server that is left; the observer hears of the new set.
        cell.admin = AdminServer(cell.settings)
        await cell.admin.start()
        async for addresses in client.watch_addresses(lm):
            if addresses == [cell.model_servers[0].address]:
                break
        assert observer.addresses[-1] == (lm, [cell.model_servers[0].address])


async def test_a_client_that_closes_reports_no_change_of_its_models_addresses(
    cell: RunningCell,
) -> None:
    # Its watches ended as a model's do when it is gone: each reported no replicas, and every
    # graceful stop of a gateway counted an address change per model it had served
    # (saxgw_address_changes_total), though none had changed.
    observer = Recorder()
    settings = ClientSettings(sax_root=cell.sax_root, admin_timeout=10.0)
    async with Client(settings, observer=observer) as client:
        lm = await publish_ready(client, "closing")
        await client.lm_generate(lm, "x", CallOptions(timeout=10))  # the table is open
        heard = list(observer.addresses)
    assert heard and observer.addresses == heard


async def test_an_unpublished_model_is_reported_gone(cell: RunningCell) -> None:
    # The gateway's metrics kept an unpublished model's label (and replicas gauge) for good:
    # nothing told them a model had gone, whoever unpublished it.
    observer = Recorder()
    settings = ClientSettings(sax_root=cell.sax_root, admin_timeout=10.0)
    async with (
        Client(settings, observer=observer) as client,
        Client(ClientSettings(sax_root=cell.sax_root)) as other,
    ):
        watched = await publish_ready(client, "gone-watched")
        await client.lm_generate(watched, "x", CallOptions(timeout=10))  # the table is open
        await other.unpublish(watched)  # this client hears it from its watch
        async with asyncio.timeout(10):
            while watched not in observer.gone:
                await asyncio.sleep(0.05)
        own = await publish_ready(client, "gone-own")
        await client.unpublish(own)  # no call, so no watch: this client unpublished it
        assert observer.gone == [watched, own]
