"""Errors as an upstream Sax admin server reports them: status UNKNOWN, the real code's Go name
at the end of the message. The admin here is a stand-in that answers only that way, over a real
socket; everything else in the client is exercised against the embedded cell elsewhere."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.client import (
    AlreadyExistsError,
    CallOptions,
    Client,
    ClientSettings,
    InvalidArgumentError,
    NotFoundError,
)
from gateway.common.rpc import Context
from tests.integration._cell_fixtures import client_of_stand_in_admin, stand_in_admin

CELL = "/sax/up"


class UpstreamStyleAdmin(admin_pb2_grpc.AdminServicer):
    """Fails like upstream: UNKNOWN, with "...: <GoCodeName>" (e.g. "...: NotFound")."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.unavailable_left = 0
        self.listed: list[str] = []  # the model IDs of a whole listing
        self.addresses: dict[str, list[str]] = {}  # what the listing names for a model
        self.unpublishing_until = 0.0  # Publish is "being unpublished" until then (monotonic)

    async def _fail(self, context: Context, text: str) -> None:
        await context.abort(grpc.StatusCode.UNKNOWN, text)

    async def List(
        self, request: admin_pb2.ListRequest, context: Context
    ) -> admin_pb2.ListResponse:
        self.calls.append("List")
        if self.unavailable_left:
            self.unavailable_left -= 1
            await self._fail(context, "admin is restarting: Unavailable")
        if request.model_id:
            await self._fail(context, f"model {request.model_id} not found: NotFound")
        published = [
            admin_pb2.PublishedModel(
                model=admin_pb2.Model(model_id=model_id),
                modelet_addresses=self.addresses.get(model_id, []),
            )
            for model_id in self.listed
        ]
        return admin_pb2.ListResponse(published_models=published)

    async def Publish(
        self, request: admin_pb2.PublishRequest, context: Context
    ) -> admin_pb2.PublishResponse:
        self.calls.append("Publish")
        if time.monotonic() < self.unpublishing_until:
            # Upstream's admin, for ~10 s after an unpublish of the model (saxml/admin/mgr.go).
            model_id = request.model.model_id
            await self._fail(
                context, f"model {model_id} is being unpublished, please retry later: Unavailable"
            )
        if request.model.model_path == "fine":
            return admin_pb2.PublishResponse()
        if request.model.model_path == "bad path":
            await self._fail(context, "invalid model path: InvalidArgument")
        await self._fail(context, f"model {request.model.model_id} already exists: AlreadyExists")
        return admin_pb2.PublishResponse()

    async def WatchLoc(
        self, request: admin_pb2.WatchLocRequest, context: Context
    ) -> admin_pb2.WatchLocResponse:
        self.calls.append("WatchLoc")
        await self._fail(
            context, f"rpc error: code = NotFound desc = model {request.model_id} not published"
        )
        return admin_pb2.WatchLocResponse()


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[tuple[Client, UpstreamStyleAdmin]]:
    # Only the RPCs under test: the .pyi marks every RPC abstract, while at run time the rest
    # answer UNIMPLEMENTED from the generated base class.
    servicer = UpstreamStyleAdmin()  # type: ignore[abstract]
    async with client_of_stand_in_admin(servicer, str(tmp_path / "root"), CELL) as client:
        yield client, servicer


async def test_unknown_not_found_becomes_not_found(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    client, servicer = upstream
    with pytest.raises(NotFoundError, match=r"not found: NotFound$"):
        await client.list_detail(f"{CELL}/foo")
    assert servicer.calls == ["List"]  # NOT_FOUND is final: never retried


async def test_unknown_already_exists_and_invalid_argument(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    client, servicer = upstream
    with pytest.raises(AlreadyExistsError):
        await client.publish(f"{CELL}/foo", "some.Path", "None", 1)
    with pytest.raises(InvalidArgumentError):
        await client.publish(f"{CELL}/foo", "bad path", "None", 1)
    assert servicer.calls == ["Publish", "Publish"]


async def test_unknown_unavailable_is_retried(upstream: tuple[Client, UpstreamStyleAdmin]) -> None:
    client, servicer = upstream
    servicer.unavailable_left = 2
    assert await client.list_all(CELL) == []
    assert servicer.calls == ["List", "List", "List"]


async def test_watch_not_found_in_go_status_text_fails_data_calls(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    client, servicer = upstream
    for _ in range(2):
        with pytest.raises(NotFoundError, match="not published"):
            await client.lm_generate(f"{CELL}/foo", "x", CallOptions(timeout=5))
    # Never retried. The List, once per connection, asks the admin whether it is this
    # cell's (an admin of another cell answers WatchLoc NOT_FOUND too: `_othercell`).
    assert servicer.calls == ["WatchLoc", "List", "WatchLoc"]


async def test_a_listing_with_another_cells_model_is_this_cells_without_it(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    # Upstream's admin serves whatever its state.proto holds, a model of another cell too (a
    # state copied from another cell's fs root). One such model in its listing made the
    # client take it for the admin of that cell: the whole cell's listing was UNAVAILABLE
    # ("it is the admin of cell /sax/elsewhere"), though it listed this cell's own models.
    client, servicer = upstream
    servicer.listed = [f"{CELL}/ours", "/sax/elsewhere/theirs", f"{CELL}/also"]
    assert [m.model_id for m in await client.list_all(CELL)] == [f"{CELL}/also", f"{CELL}/ours"]
    assert servicer.calls == ["List"]


async def test_a_model_listed_twice_is_listed_once(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    # An admin whose state holds a model twice (hand-edited, or two admins' saves merged)
    # lists both: /listall, `GET /v1/models` and `saxgw ls` named the model twice.
    client, servicer = upstream
    servicer.listed = [f"{CELL}/twice", f"{CELL}/once", f"{CELL}/twice"]
    assert [m.model_id for m in await client.list_all(CELL)] == [f"{CELL}/once", f"{CELL}/twice"]


async def test_a_listings_active_replicas_are_its_distinct_host_port_addresses(
    upstream: tuple[Client, UpstreamStyleAdmin],
) -> None:
    # Counted as listed, a model whose admin named 5 addresses no call can reach showed 5
    # active replicas (/listall, saxgw ls, saxgw_model_replicas), and one it named thrice, 3.
    client, servicer = upstream
    servicer.listed = [f"{CELL}/odd", f"{CELL}/thrice"]
    servicer.addresses = {
        f"{CELL}/odd": ["", "h", "h:99999", "unix:/x", "10.0.0.1:1 "],
        f"{CELL}/thrice": ["10.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"],
    }
    listed = {m.model_id: (m.active_replicas, m.addresses) for m in await client.list_all(CELL)}
    assert listed == {
        f"{CELL}/odd": (0, ["", "10.0.0.1:1 ", "h", "h:99999", "unix:/x"]),
        f"{CELL}/thrice": (2, ["10.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"]),
    }


async def test_a_publish_being_unpublished_is_retried_until_its_deadline(tmp_path: Path) -> None:
    # Upstream's admin refuses a publish for ~10 s after the model's unpublish, "retry later"
    # (UNAVAILABLE). The client gave up once its unreachable window (5 s) had passed, as for
    # an admin it cannot reach, and a publish right after an unpublish was a 503.
    servicer = UpstreamStyleAdmin()  # type: ignore[abstract]
    settings = ClientSettings(sax_root=str(tmp_path / "root"), admin_unreachable_after=0.5)
    async with stand_in_admin(servicer, settings.sax_root, CELL), Client(settings) as client:
        servicer.unpublishing_until = time.monotonic() + 2.0
        await client.publish(f"{CELL}/again", "fine", "None", 1, timeout=30)
    assert servicer.calls.count("Publish") > 2
