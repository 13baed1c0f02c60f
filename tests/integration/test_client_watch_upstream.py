"""Address watches against an admin that answers WatchLoc as upstream's does: a poll from
another incarnation (or from seqno 0) gets the mutations since 0 without a full set while its
log is short, and a poll ahead of the set gets only the set's next seqno. Either answer is the
whole set, not changes to the one the client held: applied on top, a replica the new set never
had stayed in the table for good. The admin is a stand-in over a real socket; it keeps its set
in the embedded cell's own `WatchableSet`, whose log rules are upstream's."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import admin_pb2, admin_pb2_grpc, lm_pb2, lm_pb2_grpc

from gateway.cell.admin.watchable import WatchableSet
from gateway.client import (
    CallOptions,
    Client,
    ClientSettings,
    UnavailableError,
    UnimplementedError,
)
from gateway.common.rpc import Context
from tests.integration._cell_fixtures import (
    refusing_every_call,
    stand_in_admin,
    stand_in_server,
)

CELL = "/sax/up"
MODEL = f"{CELL}/lm"
BOUND_S = 20.0  # far beyond a second's re-poll; a test that fails waits this long


class UpstreamWatchAdmin(admin_pb2_grpc.AdminServicer):
    """Serves WatchLoc for one model as upstream's admin does (saxml/admin/admin.go)."""

    def __init__(self, *addresses: str) -> None:
        self.server_id = uuid.uuid4().hex
        self.addresses = WatchableSet()
        for address in addresses:
            self.addresses.add(address)

    def republish(self, *addresses: str) -> None:
        """Unpublish then publish again while a poll's answer from the old set is on its way
        (a last change of the old set answers it): the client's next poll reaches the new set,
        which starts again from seqno 0, with the old set's seqno."""
        old, self.addresses = self.addresses, WatchableSet()
        for address in addresses:
            self.addresses.add(address)
        old.add("10.0.0.9:1")

    async def WatchLoc(
        self, request: admin_pb2.WatchLocRequest, context: Context
    ) -> admin_pb2.WatchLocResponse:
        # Another incarnation's seqno means nothing here: upstream starts it from 0.
        same = request.admin_server_id == self.server_id
        result = await self.addresses.watch(request.seqno if same else 0)
        return admin_pb2.WatchLocResponse(admin_server_id=self.server_id, result=result.to_proto())


def upstream_admin(*addresses: str) -> UpstreamWatchAdmin:
    # Only WatchLoc: the .pyi marks every RPC abstract, while at run time the rest answer
    # UNIMPLEMENTED from the generated base class.
    return UpstreamWatchAdmin(*addresses)  # type: ignore[abstract]


@asynccontextmanager
async def serving(admin: UpstreamWatchAdmin, root: Path) -> AsyncIterator[None]:
    async with stand_in_admin(admin, str(root), CELL):
        yield


async def _until(watch: AsyncIterator[list[str]], wanted: list[str]) -> None:
    """Returns once the watch reports ``wanted``; fails the test after BOUND_S."""
    async with asyncio.timeout(BOUND_S):
        async for addresses in watch:
            if addresses == wanted:
                return


async def test_a_restarted_admin_answers_with_the_whole_set(tmp_path: Path) -> None:
    first = upstream_admin("10.0.0.1:1", "10.0.0.2:1")
    async with Client(ClientSettings(sax_root=str(tmp_path), admin_timeout=5)) as client:
        watch = client.watch_addresses(MODEL)
        async with serving(first, tmp_path):
            assert await anext(watch) == ["10.0.0.1:1", "10.0.0.2:1"]
        # Restarted elsewhere, it knows one model server so far: one mutation, no full set.
        async with serving(upstream_admin("10.0.0.3:1"), tmp_path):
            await _until(watch, ["10.0.0.3:1"])
        await watch.aclose()


async def test_a_set_replaced_between_polls_is_read_again_from_zero(tmp_path: Path) -> None:
    admin = upstream_admin("10.0.0.1:1", "10.0.0.2:1", "10.0.0.4:1")
    async with (
        serving(admin, tmp_path),
        Client(ClientSettings(sax_root=str(tmp_path), admin_timeout=5)) as client,
    ):
        watch = client.watch_addresses(MODEL)
        assert await anext(watch) == ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.4:1"]
        # The client's next poll asks from seqno 4 of the old set; the new one is at 2.
        admin.republish("10.0.0.3:1", "10.0.0.5:1")
        await _until(watch, ["10.0.0.3:1", "10.0.0.5:1"])
        await watch.aclose()


class _HastyAdmin(admin_pb2_grpc.AdminServicer):
    """Answers every WatchLoc at once with the same whole set, whatever the poll's seqno: an
    admin (or a proxy in front of one) that does not hold a poll until its set changes.
    ``sets``: each model's addresses."""

    def __init__(self, **sets: list[str]) -> None:
        self.polls = 0
        self.sets = sets

    async def WatchLoc(
        self, request: admin_pb2.WatchLocRequest, context: Context
    ) -> admin_pb2.WatchLocResponse:
        self.polls += 1
        addresses = self.sets[request.model_id.rpartition("/")[2]]
        result = admin_pb2.WatchResult(next_seqno=1, has_fullset=True, values=addresses)
        return admin_pb2.WatchLocResponse(admin_server_id="hasty", result=result)


async def test_an_admin_that_answers_every_poll_at_once_is_polled_once_a_second(
    tmp_path: Path,
) -> None:
    # Each answer that changed nothing was followed by the next poll at once: about 350 polls
    # a second from each gateway process for each model called, half a core of the gateway's
    # and as much of the admin's (measured: 109,582 WatchLoc in five minutes, one model).
    admin = _HastyAdmin(lm=["10.0.0.1:1"])  # type: ignore[abstract]
    async with (
        stand_in_admin(admin, str(tmp_path), CELL),
        Client(ClientSettings(sax_root=str(tmp_path), admin_timeout=5)) as client,
    ):
        watch = client.watch_addresses(MODEL)
        assert await anext(watch) == ["10.0.0.1:1"]
        await asyncio.sleep(1.5)
        await watch.aclose()
    assert 2 <= admin.polls <= 4


async def test_addresses_that_are_not_host_port_are_never_dialled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc dials what it is given: 127.0.0.1:99999 went to port 34463 (modulo 65536), a
    # server of someone else's; "127.0.0.1" to port 443; "" failed each call UNKNOWN 'Failed
    # to create channel', a 500; a model with nothing else waited for its deadline.
    odd = ["", "127.0.0.1:99999", "127.0.0.1", "unix:/run/x.sock", "10.0.0.2:1 "]
    admin = _HastyAdmin(lm=[*odd, "10.0.0.1:1"], odd=odd)  # type: ignore[abstract]
    async with (
        stand_in_admin(admin, str(tmp_path), CELL),
        Client(ClientSettings(sax_root=str(tmp_path), admin_timeout=5)) as client,
    ):
        watch = client.watch_addresses(MODEL)
        assert await anext(watch) == ["10.0.0.1:1"]
        await watch.aclose()
        with pytest.raises(UnavailableError) as failed:
            await client.lm_generate(f"{CELL}/odd", "x", CallOptions(timeout=5))
    assert failed.value.message == (
        f"no replica of {CELL}/odd can be reached: the admin of its cell names only '', "
        "'10.0.0.2:1 ', '127.0.0.1' and 2 more for it, not HOST:PORT"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"the admin names '', '10.0.0.2:1 ', '127.0.0.1' and 2 more for {model}, not HOST:PORT; "
        "calls do not go there"
        for model in (MODEL, f"{CELL}/odd")
    ]


class _Echo(lm_pb2_grpc.LMServiceServicer):
    async def Generate(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> lm_pb2.GenerateResponse:
        return lm_pb2.GenerateResponse(texts=[lm_pb2.DecodedText(text=request.text)])


async def test_a_replica_without_the_method_or_asking_for_credentials_is_failed_over(
    tmp_path: Path,
) -> None:
    # An admin naming its own address for a model (or another program's, or a model server of
    # a Sax without the method): grpc's UNIMPLEMENTED 'Method not found!' failed every other
    # call of the model, a 501 naming nothing, where its other replica served them. A replica
    # behind an auth proxy (a mesh's sidecar) refusing the client, which sends no credentials:
    # its UNAUTHENTICATED was passed on as the caller's own 401 (saxgw: set SAXGW_API_KEY).
    admin = _HastyAdmin()  # type: ignore[abstract]
    echo = _Echo()  # type: ignore[abstract]
    async with (
        stand_in_admin(admin, str(tmp_path), CELL) as own,
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(echo, s)) as ok,
        stand_in_server(refusing_every_call(grpc.StatusCode.UNAUTHENTICATED)) as proxied,
        Client(ClientSettings(sax_root=str(tmp_path), admin_timeout=5)) as client,
    ):
        admin.sets.update(lm=[own, ok, proxied], own=[own], proxied=[proxied])
        for _ in range(6):
            assert await client.lm_generate(MODEL, "x", CallOptions(timeout=5)) == [("x", 0.0)]
        with pytest.raises(UnimplementedError) as unserved:
            await client.lm_generate(f"{CELL}/own", "x", CallOptions(timeout=5))
        with pytest.raises(UnavailableError) as refused:  # at once, not at the deadline
            await client.lm_generate(f"{CELL}/proxied", "x", CallOptions(timeout=30))
    assert unserved.value.message == (
        f"the model server of {CELL}/own at {own} does not serve this call (Method not "
        "found!): it is no Sax model server, or one of a Sax without it"
    )
    assert refused.value.message == (
        f"the model server of {CELL}/proxied at {proxied} asks for credentials, which this "
        "client does not send (UNAUTHENTICATED: no credentials)"
    )
