"""A call stuck on a hung replica: once the admin gives up on the replica and the pool closes
its channel, the call goes to a replica still serving, within its deadline (it used to end
as UNAVAILABLE, "a connection closed under the call"); a stream that had begun ends with
UNAVAILABLE, which its consumer can report (it used to end as a CancelledError). Before the
admin gives up, new calls go to the replica that answers (they used to alternate)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from saxml.protobuf import lm_pb2, lm_pb2_grpc, modelet_pb2, modelet_pb2_grpc

from gateway.client import ClientSettings, UnavailableError, _channels
from gateway.client._admin import CellAdmin
from gateway.client._locations import AddressTable
from gateway.client._router import Router
from gateway.common import slottable
from gateway.common.deadline import Deadline
from gateway.common.names import CellId
from gateway.common.rpc import Context
from tests._faultproxy import FaultProxy
from tests._wait import until
from tests.integration._cell_fixtures import stand_in_server

MODEL = "/sax/test/lm"


class _Replica(lm_pb2_grpc.LMServiceServicer):
    """Answers Generate with its own name, or never (``hung``), as a stopped process would;
    a query of ``slow_text``, only after a minute, as a long generation."""

    def __init__(
        self, name: str, *, hung: bool, hangs_after_first: bool = False, slow_text: str = ""
    ) -> None:
        self.name, self.hung, self.calls = name, hung, 0
        self.hangs_after_first = hangs_after_first
        self.slow_text = slow_text

    async def Generate(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> lm_pb2.GenerateResponse:
        self.calls += 1
        if self.hung:
            await asyncio.Event().wait()
        if self.slow_text and request.text == self.slow_text:
            await asyncio.sleep(60)
        return lm_pb2.GenerateResponse(texts=[lm_pb2.DecodedText(text=self.name, score=0.0)])

    async def GenerateStream(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> AsyncIterator[lm_pb2.GenerateStreamResponse]:
        self.calls += 1
        if self.hung:
            await asyncio.Event().wait()
        reply = lm_pb2.GenerateStreamResponse()
        reply.items.add(text=self.name, prefix_len=0, score=0.0)
        yield reply
        if self.hangs_after_first:
            await asyncio.Event().wait()


class _Modelet(modelet_pb2_grpc.ModeletServicer):
    """A model server's control service: GetStatus answers at once, unless its replica hangs."""

    def __init__(self, replica: _Replica) -> None:
        self.replica = replica

    async def GetStatus(
        self, request: modelet_pb2.GetStatusRequest, context: Context
    ) -> modelet_pb2.GetStatusResponse:
        if self.replica.hung:
            await asyncio.Event().wait()
        return modelet_pb2.GetStatusResponse()


def _serving(replica: _Replica) -> Callable[[grpc.aio.Server], None]:
    """Adds ``replica``'s data and control services to a server."""

    def add_to(server: grpc.aio.Server) -> None:
        lm_pb2_grpc.add_LMServiceServicer_to_server(replica, server)
        modelet_pb2_grpc.add_ModeletServicer_to_server(_Modelet(replica), server)  # type: ignore[abstract]

    return add_to


def _same(reply: lm_pb2.GenerateStreamResponse) -> lm_pb2.GenerateStreamResponse:
    return reply


def _no_admin(cell: CellId) -> CellAdmin:
    raise AssertionError(f"no admin call expected (cell {cell}): the test sets the table")


@contextlib.asynccontextmanager
async def _router_on(address: str) -> AsyncIterator[tuple[Router, AddressTable]]:
    """A router whose table for MODEL is ``address`` alone, as the admin last reported it;
    the test changes the table (and the pool) as the admin would."""
    router = Router(admin_for=_no_admin, settings=ClientSettings(sax_root="/nowhere"))
    try:
        table = router._tables[MODEL] = AddressTable(MODEL, num_conn=2, seed=0)
        table.known = True
        table.set_addresses({address})
        yield router, table
    finally:
        await router.close()


_TwoReplicas = tuple[_Replica, _Replica, str, str, Router, AddressTable]


@contextlib.asynccontextmanager
async def _hung_and_healthy() -> AsyncIterator[_TwoReplicas]:
    """A hung replica and a healthy one on servers of their own, and a router whose table
    for MODEL names the hung one alone: (hung, healthy, its address, the healthy one's,
    router, table)."""
    hung = _Replica("hung", hung=True)  # type: ignore[abstract]
    healthy = _Replica("healthy", hung=False)  # type: ignore[abstract]
    async with (
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(hung, s)) as stuck,
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(healthy, s)) as ok,
        _router_on(stuck) as (router, table),
    ):
        yield hung, healthy, stuck, ok, router, table


async def _first_text(router: Router, kind: str) -> str:
    """One Generate ("unary") or GenerateStream ("stream") call: the text of its first reply."""
    request = lm_pb2.GenerateRequest(model_key=MODEL, text="q")
    deadline = Deadline.after(30)
    if kind == "unary":
        reply = await router.unary(MODEL, lambda b: b.lm.Generate, request, deadline)
        return reply.texts[0].text
    # Closed here, not whenever the event loop finalizes the generator: until then the
    # stream counts as in flight on its replica, which tied the healthy replica with the hung
    # one now and then, so the router's pick between them was a coin toss (a flaky run).
    stream = router.stream(MODEL, lambda b: b.lm.GenerateStream, request, deadline, _same)
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            return item.items[0].text
    return "no reply"


@pytest.mark.parametrize("kind", ["unary", "stream"])
async def test_a_call_on_a_replica_dropped_while_hung_goes_to_one_still_serving(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_channels, "_CLOSE_GRACE_S", 0.2)
    async with _hung_and_healthy() as (hung, healthy, _, ok, router, table):
        call = asyncio.ensure_future(_first_text(router, kind))
        while not hung.calls:
            await asyncio.sleep(0.01)
        # The admin drops the hung replica: the table changes, the pool lets its channel go.
        table.set_addresses({ok})
        router._pool.retain([ok])
        text = await asyncio.wait_for(call, 10)
        assert _in_flight(router) == {ok: 0}  # the failed-over attempt is not counted
    assert text == "healthy"
    assert (hung.calls, healthy.calls) == (1, 1)


def _in_flight(router: Router) -> dict[str, int]:
    return {address: b.in_flight for address, b in router._pool._backends.items()}


@pytest.mark.parametrize("kind", ["unary", "stream"])
async def test_new_calls_go_to_the_replica_that_answers_not_the_one_holding_a_hung_call(
    kind: str,
) -> None:
    async with _hung_and_healthy() as (hung, healthy, stuck, ok, router, table):
        table.set_addresses({stuck, ok})  # both serve, as far as the admin knows
        pending: list[asyncio.Future[str]] = []
        answers: list[str] = []
        for _ in range(10):  # one at a time: each either answers or hangs before the next
            before = hung.calls
            task: asyncio.Future[str] = asyncio.ensure_future(_first_text(router, kind))
            while not task.done() and hung.calls == before:
                await asyncio.sleep(0.005)
            if task.done():
                answers.append(task.result())
            else:
                pending.append(task)
        # Round-robin sent every other call to the hung replica (5 of 10).
        assert (hung.calls, healthy.calls) == (1, 9)
        assert answers == ["healthy"] * 9
        assert _in_flight(router) == {stuck: 1, ok: 0}
        for task in pending:  # the caller gives up: the hung call is no longer counted
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert _in_flight(router) == {stuck: 0, ok: 0}


async def test_a_stream_that_began_on_a_replica_dropped_while_hung_fails_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Text was sent already: no other replica can take over, and the consumer (an OpenAI or
    # HTTP stream) must see a failure it reports in-band, not a CancelledError that looks
    # like its own caller going away and ends its HTTP stream as if complete.
    monkeypatch.setattr(_channels, "_CLOSE_GRACE_S", 0.2)
    hung = _Replica("hung", hung=False, hangs_after_first=True)  # type: ignore[abstract]
    async with (
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(hung, s)) as stuck,
        _router_on(stuck) as (router, table),
    ):
        request = lm_pb2.GenerateRequest(model_key=MODEL, text="q")
        received: list[str] = []

        async def stream() -> None:
            async for reply in router.stream(
                MODEL, lambda b: b.lm.GenerateStream, request, Deadline.after(30), _same
            ):
                received.append(reply.items[0].text)

        call = asyncio.ensure_future(stream())
        while not received:
            await asyncio.sleep(0.01)
        table.set_addresses(set())  # the admin drops it
        router._pool.retain([])
        with pytest.raises(UnavailableError, match="closed under the call"):
            await asyncio.wait_for(call, 10)
    assert received == ["hung"]


async def test_a_replica_that_answers_nothing_gets_no_new_calls_one_slow_to_answer_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each holds a call that has not ended (a stopped process's; a long generation's), so
    # their load cannot tell them apart, nor can how long their calls have run: only that
    # the slow one answers a status request. Round-robin sent the hung one every other call.
    # Its WARNING ends with a line when it leaves its model (the admin dropped it): the log
    # said it "may hang" for good, with no word that calls no longer go there.
    caplog.set_level(logging.INFO, logger="gateway.client")
    hung = _Replica("hung", hung=True)  # type: ignore[abstract]
    slow = _Replica("slow", hung=False, slow_text="long")  # type: ignore[abstract]
    async with (
        stand_in_server(_serving(hung)) as stuck,
        stand_in_server(_serving(slow)) as ok,
        _router_on(stuck) as (router, table),
    ):
        table.set_addresses({stuck, ok})
        router._hang_watch.start()  # as the first call of a model starts it (`Router._open`)
        long = lm_pb2.GenerateRequest(model_key=MODEL, text="long")
        held: list[asyncio.Future[lm_pb2.GenerateResponse]] = []
        while not (hung.calls and slow.calls):  # one call on each, whichever goes first
            held.append(
                asyncio.ensure_future(
                    router.unary(MODEL, lambda b: b.lm.Generate, long, Deadline.after(60))
                )
            )
            calls = hung.calls + slow.calls
            while hung.calls + slow.calls == calls:
                await asyncio.sleep(0.01)
        assert len(held) == 2
        # Found silent: a tick, another, and its probe's 1 s without an answer (about 2.5 s;
        # a fixed 4 s left a loaded host little room).
        hung_one = router._pool.get(stuck)
        await until("the hung replica found silent", lambda: hung_one.suspect_since is not None)
        texts = [await asyncio.wait_for(_first_text(router, "unary"), 3) for _ in range(10)]
        assert texts == ["slow"] * 10
        assert hung.calls == 1
        table.set_addresses({ok})  # the admin drops the hung replica
        router._pool.retain([ok])
        for call in held:
            call.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    lines = [r.getMessage() for r in caplog.records if stuck in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"model server {stuck} holds a call and answers nothing"), lines
    assert re.fullmatch(
        f"model server {stuck} left the address sets of its models after [0-9]+ s without an "
        "answer: no call goes to it",
        lines[1],
    ), lines


async def test_a_replica_one_process_found_silent_gets_no_new_calls_from_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two gateway processes of a stack (a router each, a worker each of one table): the one
    # whose call is stuck on the hung replica finds it silent; the other, which has no call
    # there, takes the finding at once and sends nothing there. Before, it went on sending it
    # every other call until a call of its own had been stuck there for 2 s (a 504 per
    # gateway process for a caller whose calls went through both, 3 s apart).
    caplog.set_level(logging.INFO, logger="gateway.client")
    path = str(tmp_path / "slots")
    slottable.create(path, workers=2)
    boards = [slottable.SlotTable(path, worker) for worker in (0, 1)]
    hung = _Replica("hung", hung=True)  # type: ignore[abstract]
    healthy = _Replica("healthy", hung=False)  # type: ignore[abstract]
    try:
        async with (
            stand_in_server(_serving(hung)) as stuck,
            stand_in_server(_serving(healthy)) as ok,
            _router_on(stuck) as (finder, _),
            _router_on(stuck) as (other, table),
        ):
            table.set_addresses({stuck, ok})
            for router, board in zip((finder, other), boards, strict=True):
                router.share_findings(board)
                router._hang_watch.start()
            backends = {a: other._pool.get(a) for a in (stuck, ok)}  # as after calls to each
            # The other's watch has read the board: a finding counted before is no news to it.
            await until("the board read", lambda: stuck in other._hang_watch._heard, 5)
            call = asyncio.ensure_future(_first_text(finder, "unary"))
            await until("the hung replica has the call", lambda: hung.calls == 1, 5)
            # The finder: a tick, the call held for 1 s, its probe's 1 s without an answer
            # (about 2.5 s, then the other's next reading; 4 s left a loaded host little room).
            await until(
                "the hung replica found silent", lambda: backends[stuck].suspect_since is not None
            )
            texts = [await asyncio.wait_for(_first_text(other, "unary"), 3) for _ in range(10)]
            assert texts == ["healthy"] * 10
            assert hung.calls == 1
            # Its own probe goes unanswered too: it says so itself, once.
            await until("the hint taken back", lambda: not backends[stuck].hinted, 3)
            # A finding counted for a replica that answers (another key of the board, a
            # replica slow to answer that process alone) costs one probe, and no word.
            boards[0].note_change("silent:" + ok)
            count = boards[1].changes("silent:" + ok)
            await until("the news read", lambda: other._hang_watch._heard.get(ok) == count, 2)
            await until("no longer suspect", lambda: backends[ok].suspect_since is None, 2)
            assert [await _first_text(other, "unary") for _ in range(2)] == ["healthy"] * 2
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
    finally:
        for board in boards:
            board.close()
    lines = [
        (r.name, r.levelname, r.getMessage())
        for r in caplog.records
        if r.name.startswith("gateway.client")
    ]
    warned = [m for _, level, m in lines if level == "WARNING"]
    assert warned == [
        f"model server {stuck} holds a call and answers nothing, not even a status request "
        "within 1 s: it may hang; new calls go to its model's other replicas while it does "
        "not answer",
        f"model server {stuck} found silent by another gateway process of this stack, and "
        "answers nothing, not even a status request within 1 s: it may hang; new calls go to "
        "its model's other replicas while it does not answer",
    ], lines
    assert not [m for _, _, m in lines if ok in m], lines


async def test_a_call_on_a_connection_gone_silent_goes_to_a_replica_still_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A network that drops a connection's packets (a half-open connection: a load balancer or
    # NAT forgot it) with a call in flight: grpc's pings notice, and the call goes elsewhere
    # within its deadline (it waited for its whole deadline, as no FIN or RST ever came).
    monkeypatch.setattr(_channels, "KEEPALIVE_S", 0.5, raising=False)
    monkeypatch.setattr(_channels, "KEEPALIVE_TIMEOUT_S", 0.5, raising=False)
    first = _Replica("first", hung=False)  # type: ignore[abstract]
    second = _Replica("second", hung=False)  # type: ignore[abstract]
    async with (
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(first, s)) as one,
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(second, s)) as ok,
    ):
        proxy = FaultProxy(one)
        await proxy.start()
        try:
            async with _router_on(proxy.address) as (router, table):
                assert await _first_text(router, "unary") == "first"
                proxy.blackhole = True
                call = asyncio.ensure_future(_first_text(router, "unary"))
                while not _in_flight(router)[proxy.address]:
                    await asyncio.sleep(0.01)
                table.set_addresses({proxy.address, ok})  # the admin reports a second one
                assert await asyncio.wait_for(call, 8) == "second"
        finally:
            await proxy.close()
    assert (first.calls, second.calls) == (1, 1)


async def test_a_server_over_a_slow_link_is_reached_on_a_new_channel() -> None:
    # A link with 150 ms each way (an admin or model server in another region). grpc gave a
    # connection attempt only min_reconnect_backoff_ms (100 ms) to get the server's SETTINGS:
    # every first call on a new channel failed UNAVAILABLE, and an admin, whose client drops
    # its channel after each failure, was unreachable for good.
    far = _Replica("far", hung=False)  # type: ignore[abstract]
    async with stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(far, s)) as at:
        proxy = FaultProxy(at)
        proxy.latency = 0.15
        await proxy.start()
        try:
            async with _channels.insecure_channel(proxy.address) as channel:
                stub = lm_pb2_grpc.LMServiceStub(channel)
                request = lm_pb2.GenerateRequest(model_key=MODEL, text="q")
                reply = await stub.Generate(request, timeout=5)
        finally:
            await proxy.close()
    assert reply.texts[0].text == "far"


class _Busy(lm_pb2_grpc.LMServiceServicer):
    """A replica at its limit: every call is RESOURCE_EXHAUSTED, which a caller retries."""

    def __init__(self) -> None:
        self.calls = 0

    async def Generate(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> lm_pb2.GenerateResponse:
        self.calls += 1
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
        raise AssertionError("abort returned")


async def test_a_retry_goes_to_a_replica_that_answers_not_one_found_silent() -> None:
    # The first pick avoided the silent replica, a retry did not: after a busy replica's
    # RESOURCE_EXHAUSTED, the call went to the next untried replica in the table's order,
    # the silent one, and waited there for the rest of its deadline (a 504) while another
    # replica served.
    hung = _Replica("hung", hung=True)  # type: ignore[abstract]
    healthy = _Replica("healthy", hung=False)  # type: ignore[abstract]
    busy = _Busy()  # type: ignore[abstract]
    async with (
        stand_in_server(_serving(hung)) as stuck,
        stand_in_server(_serving(healthy)) as ok,
        stand_in_server(lambda s: lm_pb2_grpc.add_LMServiceServicer_to_server(busy, s)) as full,
        _router_on(stuck) as (router, table),
    ):
        router._hang_watch.start()
        held = asyncio.ensure_future(_first_text(router, "unary"))
        await until("the hung replica has the call", lambda: hung.calls == 1, 5)
        hung_one = router._pool.get(stuck)
        await until("the hung replica found silent", lambda: hung_one.suspect_since is not None)
        table.set_addresses({stuck, ok, full})
        table._preferred = (full, stuck, ok)  # the busy one first, then the silent one
        for _ in range(4):
            table._next = 0
            assert await asyncio.wait_for(_first_text(router, "unary"), 3) == "healthy"
        assert (busy.calls, hung.calls) == (4, 1)
        # So for the one picked in place of a replica that could not be reached just now.
        table.mark_down(full)
        for _ in range(2):
            table._next = 0
            assert await asyncio.wait_for(_first_text(router, "unary"), 3) == "healthy"
        assert (busy.calls, hung.calls) == (4, 1)
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
