"""The gateway's own checks: Sax model ACLs, model lists, per-client and per-model limits."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import (
    ClientSettings,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)
from gateway.common import slottable
from gateway.common.deadline import Deadline
from gateway.common.names import ACL_METHODS
from gateway.common.slottable import SlotTable
from gateway.config import AccessSettings, GatewaySettings, ModelLimit
from gateway.service import _access as access_module
from gateway.service import _acls as acls_module
from gateway.service import _deadlines as deadlines
from gateway.service import _stackgate as stackgate_module
from gateway.service._access import Access, AccessInterceptor
from gateway.service._counts import SharedCounts
from gateway.service._gates import UNLIMITED, Busy, Gate, WaitCounts, uncounted
from gateway.service._metrics import GatewayMetrics
from gateway.service._servicer import SaxGatewayServicer
from gateway.service._stackgate import StackCounts
from gateway.service._streams import StreamSlots
from gateway.service._usage import DATA_METHODS
from tests._wait import until

MODEL = "/sax/test/lm"
DEADLINE = Deadline.after(3600)  # the call's (gateway/service/_deadlines.py): far off here


@dataclass
class FakeClient:
    """Answers list_detail with the ACLs a test sets."""

    acls: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    async def list_detail(self, model: str, *, timeout: float) -> Any:
        self.calls += 1
        if model != MODEL:
            raise NotFoundError(f"{model} not found")
        return type("Detail", (), {"acls": dict(self.acls)})()

    def lookup_failure(self, model: str) -> None:
        return None  # its admin is never looked for


@dataclass
class FakeContext:
    client: str | None
    address: str = "10.0.0.1"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        forwarded = ("x-forwarded-for", self.address)
        return (("x-saxgw-client", self.client), forwarded) if self.client else (forwarded,)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"  # Envoy's


@dataclass
class Request:
    model: str = MODEL


def _access(client: FakeClient, **settings: Any) -> Access:
    return Access(AccessSettings(**settings), client)  # type: ignore[arg-type]


async def _admit(
    access: Access,
    who: str | None,
    method: str = "Generate",
    model: str = MODEL,
    deadline: Deadline = DEADLINE,
) -> None:
    async with access.admit(method, Request(model), FakeContext(who), deadline):
        pass


async def test_sax_acl_admits_group_members_only() -> None:
    client = FakeClient({"lm.generate": "acl/readers"})
    access = _access(client, groups=MappingProxyType({"readers": frozenset({"team-a"})}))
    await _admit(access, "team-a")
    with pytest.raises(
        PermissionDeniedError, match="limited to acl/readers; client bob is not in it"
    ):
        await _admit(access, "bob")
    with pytest.raises(PermissionDeniedError, match="client anonymous is not in it"):
        await _admit(access, None)
    await _admit(access, "bob", method="Score")  # lm.score has no ACL
    assert client.calls == 1  # ACLs are reused for a second


async def test_a_model_id_without_its_leading_slash_is_the_same_model() -> None:
    # Resource paths bind "sax/test/lm" (`POST /v1/sax/test/lm:generate`) and bodies may
    # send it; the servicer serves /sax/test/lm for it, so its ACL and model list hold.
    access = _access(
        FakeClient({"lm.generate": "acl/readers"}),
        groups=MappingProxyType({"readers": frozenset({"team-a"})}),
        client_models=MappingProxyType({"team-b": ("/sax/test/*",)}),
    )
    bare = MODEL.removeprefix("/")
    with pytest.raises(PermissionDeniedError, match="client bob is not in it"):
        await _admit(access, "bob", model=bare)
    with pytest.raises(PermissionDeniedError, match="client team-b is not in it"):
        await _admit(access, "team-b", model=bare)  # in its model list, not in the ACL
    await _admit(access, "team-a", model=bare)


async def test_an_acl_without_the_group_prefix_is_a_client_id_even_where_a_group_has_its_name() -> (
    None
):
    # docs/api.md: an ACL is a group ("acl/NAME") or a client ID. A bare name that a group
    # also had was read as the group: ACL "readers" admitted team-a and refused client readers.
    groups = MappingProxyType({"readers": frozenset({"team-a"})})
    access = _access(FakeClient({"lm.generate": "readers"}), groups=groups)
    await _admit(access, "readers")
    with pytest.raises(PermissionDeniedError, match="limited to readers; client team-a is not"):
        await _admit(access, "team-a")


async def test_an_unlisted_group_admits_the_client_of_its_name() -> None:
    access = _access(FakeClient({"lm.generate": "acl/team-b"}))
    await _admit(access, "team-b")
    with pytest.raises(PermissionDeniedError):
        await _admit(access, "team-a")


async def test_unknown_models_have_no_acl() -> None:
    await _admit(_access(FakeClient()), "anyone", model="/sax/test/other")


async def test_model_lists() -> None:
    access = _access(FakeClient(), client_models=MappingProxyType({"team-b": ("/sax/test/b-*",)}))
    await _admit(access, "team-a")  # not listed: any model
    with pytest.raises(PermissionDeniedError, match="client team-b may not use /sax/test/lm"):
        await _admit(access, "team-b")


async def test_an_overlong_model_id_is_refused_as_no_model_before_any_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client with a model list that named a 200,000-character "model" got 403 and a log
    # line quoting the whole of it (a 32 MiB body: a 32 MB line a call, at the client's
    # rate), where a client without one got the servicer's 400. No model has such an ID: the
    # same 400 for both, quoted short, nothing logged.
    access = _access(FakeClient(), client_models=MappingProxyType({"team-b": ("/sax/test/b-*",)}))
    long_id = "/sax/test/b-" + "a" * 200_000
    caplog.set_level(logging.DEBUG)
    for who in ("team-b", "team-a", None):
        for request in (Request(long_id), NamedRequest(long_id)):
            with pytest.raises(InvalidArgumentError) as refused:
                async with access.admit("GetAcl", request, FakeContext(who), DEADLINE):
                    pass
            assert len(str(refused.value)) < 400
            assert "200012 characters" in str(refused.value)
    assert max((len(r.getMessage()) for r in caplog.records), default=0) < 400


@dataclass
class NamedRequest:
    """GetAcl's and SetAcl's shape: a cell or a model ID in ``name``."""

    name: str


async def test_model_lists_hold_for_calls_that_name_the_model_in_name() -> None:
    access = _access(FakeClient(), client_models=MappingProxyType({"team-b": ("/sax/test/b-*",)}))
    with pytest.raises(PermissionDeniedError, match="client team-b may not use /sax/test/lm"):
        async with access.admit("GetAcl", NamedRequest(MODEL), FakeContext("team-b"), DEADLINE):
            pass
    for name in ("/sax/test/b-lm", "/sax/test"):  # its own model; a cell is no model
        async with access.admit("GetAcl", NamedRequest(name), FakeContext("team-b"), DEADLINE):
            pass


async def test_model_gate_runs_some_queues_some_and_sheds_the_rest() -> None:
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    release = asyncio.Event()
    order: list[str] = []

    async def call(name: str) -> None:
        async with access.admit("Generate", Request(), FakeContext(name), DEADLINE):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(call("a"))
    second = asyncio.create_task(call("b"))
    await until("a runs and b waits", lambda: order == ["a"] and _waiting(access) == 1)
    with pytest.raises(ResourceExhaustedError, match="at its limit") as shed:
        await call("c")
    assert isinstance(shed.value, Busy)  # the one with a Retry-After
    assert shed.value.metadata == (("retry-after", "1"),)
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a", "b"]
    assert access._gates == {}  # idle gates are dropped: memory stays bounded


async def test_the_calls_of_one_request_stay_within_the_models_limit() -> None:
    # An OpenAI request of many prompts (or embedding inputs) is one admission and many model
    # calls: together they may use the model's free slots, never more, and never its queue.
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=3, max_queued=0))
    running, peak = 0, 0
    release = asyncio.Event()

    async def call(number: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return number

    async def request() -> list[int]:
        admission = access.admit("Generate", Request(), FakeContext("team-a"), DEADLINE)
        async with admission as admitted:
            return await admitted.each([functools.partial(call, n) for n in range(8)])

    first = asyncio.create_task(request())
    await until("three calls run", lambda: running == 3)
    assert (running, peak) == (3, 3)
    with pytest.raises(ResourceExhaustedError, match="at its limit"):
        await _admit(access, "team-b")  # the model's slots are taken, and it has no queue
    release.set()
    assert await first == list(range(8))
    assert peak == 3 and access._gates == {}


class Calls:
    """Model calls a test releases one by one: which began, how many run at once."""

    def __init__(self) -> None:
        self.began: list[object] = []
        self.running = self.peak = 0
        self._ends: dict[object, asyncio.Event] = {}

    async def call(self, name: object) -> object:
        self.began.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self._ends.setdefault(name, asyncio.Event()).wait()
        finally:
            self.running -= 1
        return name

    def end(self, name: object) -> None:
        self._ends.setdefault(name, asyncio.Event()).set()

    def end_all(self) -> None:
        for name in [*self.began, *self._ends]:
            self.end(name)


async def _request(
    access: Access,
    calls: Calls,
    names: list[object],
    who: str = "team-a",
    deadline: Deadline = DEADLINE,
) -> list[object]:
    """One request of ``who`` (an OpenAI request of several prompts): one admission, a call
    for each of ``names``."""
    async with access.admit("Generate", Request(), FakeContext(who), deadline) as admitted:
        return await admitted.each([functools.partial(calls.call, n) for n in names])


async def _settled() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _waiting(access: Access) -> int:
    """Calls waiting in this process's queue for the model."""
    gate = access._gates.get(MODEL)
    return 0 if gate is None else gate.waiting


async def test_the_calls_of_one_request_stay_within_the_clients_limit() -> None:
    # Before, a request took its client's slot once and then as many of the model's as were
    # free: 8 calls at once for a client limited to 2, the whole model.
    access = _access(
        FakeClient(),
        client_max_concurrent=MappingProxyType({"team-a": 2}),
        model=ModelLimit(max_in_flight=8, max_queued=8),
    )
    calls = Calls()
    request = asyncio.create_task(_request(access, calls, list(range(6))))
    await _settled()
    assert (calls.began, calls.running) == ([0, 1], 2)
    with pytest.raises(Busy, match="client team-a has 2 calls in flight"):
        await _admit(access, "team-a")  # its second call counts as the client's
    await _admit(access, "team-b")  # the model's slots it does not use are others'
    calls.end_all()
    while not request.done():
        await _settled()
        calls.end_all()
    assert await request == list(range(6))
    assert calls.peak == 2
    assert access._per_client.held("team-a") == 0 and access._gates == {}


async def test_a_request_of_a_client_at_its_limit_runs_its_calls_one_by_one() -> None:
    access = _access(FakeClient(), client_max_concurrent=MappingProxyType({"team-a": 2}))
    calls = Calls()
    other = asyncio.create_task(_request(access, calls, ["other"]))
    await _settled()
    request = asyncio.create_task(_request(access, calls, [0, 1, 2]))
    for number in range(3):
        await _settled()
        assert calls.running == 2 and calls.began[-1] == number
        calls.end(number)
    assert await request == [0, 1, 2]
    calls.end("other")
    await other


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[list[SlotTable]]:
    """A stack's table, as its two gateway processes map it; unmapped after the test."""
    slottable.create(str(tmp_path / "slots"), workers=2)
    mapped = [SlotTable(str(tmp_path / "slots"), worker) for worker in (0, 1)]
    yield mapped
    for table in mapped:
        table.close()


async def test_workers_of_one_stack_count_a_requests_calls_against_one_limit(
    tables: list[SlotTable],
) -> None:
    settings = AccessSettings(client_max_concurrent=MappingProxyType({"team-a": 3}))
    first, second = (
        Access(settings, FakeClient(), SharedCounts(table, "calls"))  # type: ignore[arg-type]
        for table in tables
    )
    calls = Calls()
    held = asyncio.create_task(_request(second, calls, ["held"]))
    await _settled()
    request = asyncio.create_task(_request(first, calls, list(range(5))))
    await _settled()
    assert (calls.running, tables[0].held("calls:team-a")) == (3, 3)
    calls.end("held")
    await held
    calls.end(0)
    await _settled()  # the slot the other gateway gave back is one more for the request
    assert calls.began == ["held", 0, 1, 2, 3] and calls.running == 3
    calls.end_all()
    while not request.done():
        await _settled()
        calls.end_all()
    assert await request == list(range(5))
    assert calls.peak == 3 and tables[0].held("calls:team-a") == 0


async def test_a_call_queued_behind_a_request_waits_for_one_of_its_calls() -> None:
    # Before, a request kept its slot for all its calls: the call behind it waited for 4.
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    calls = Calls()
    request = asyncio.create_task(_request(access, calls, [0, 1, 2, 3]))
    await _settled()
    single = asyncio.create_task(_request(access, calls, ["single"], who="team-b"))
    await _settled()
    assert calls.began == [0]
    # The request waits in line behind the call it gave its slot to, however full the queue
    # (max_queued: 1): a request admitted is no call to shed.
    calls.end(0)
    await _settled()
    assert calls.began == [0, "single"]
    with pytest.raises(Busy, match="at its limit of calls in flight and queued"):
        await _admit(access, "team-c")
    calls.end("single")
    assert await single == ["single"]
    calls.end_all()
    while not request.done():
        await _settled()
        calls.end_all()
    assert await request == [0, 1, 2, 3]
    assert calls.began == [0, "single", 1, 2, 3] and access._gates == {}


async def test_a_request_that_passes_its_slot_on_counts_in_the_queue_gauge_while_it_waits() -> None:
    metrics = GatewayMetrics()
    settings = AccessSettings(model=ModelLimit(max_in_flight=1, max_queued=1))
    access = Access(settings, FakeClient(), waits=_gauged(metrics))  # type: ignore[arg-type]
    calls = Calls()
    request = asyncio.create_task(_request(access, calls, [0, 1]))
    await until("the request's first call runs", lambda: calls.began == [0])
    single = asyncio.create_task(_request(access, calls, ["single"], who="team-b"))
    await until("a call waits behind it", lambda: _waiting(access) == 1)
    assert _queue_gauge(metrics) == 1
    calls.end(0)  # the request gives its slot to that call, and waits in line for the next
    await until("the call runs", lambda: calls.began == [0, "single"])
    assert _waiting(access) == 1 and _queue_gauge(metrics) == 1
    calls.end("single")
    await until("the request's next call runs", lambda: calls.began == [0, "single", 1])
    assert _queue_gauge(metrics) == 0
    calls.end(1)
    assert (await request, await single) == ([0, 1], ["single"])


async def test_a_request_out_of_time_in_the_queue_gives_back_no_slot_twice() -> None:
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    calls = Calls()
    # The deadline must outlast the request's admission and first call (a loaded CI host once
    # took over 50 ms to read its ACLs, and the request failed there, before the queue), and
    # ends while its next call waits in the queue: the test waits for it, so 1 s.
    request = asyncio.create_task(_request(access, calls, [0, 1], deadline=Deadline.after(1.0)))
    await _settled()
    single = asyncio.create_task(_request(access, calls, ["single"], who="team-b"))
    await _settled()
    assert (calls.began, _waiting(access)) == ([0], 1)  # the single call queued behind call 0
    calls.end(0)
    with pytest.raises(DeadlineExceededError, match="waiting in the model's queue"):
        await asyncio.wait_for(request, 5)  # before, it ran its next call: until released
    # The slot is the single call's alone: one more call queues, the next is shed.
    queued = asyncio.create_task(_request(access, calls, ["queued"], who="team-c"))
    await _settled()
    assert calls.began == [0, "single"]
    with pytest.raises(Busy, match="at its limit of calls in flight and queued"):
        await _admit(access, "team-d")
    calls.end_all()
    await single
    calls.end_all()
    await queued
    assert access._gates == {}


async def test_per_client_concurrency() -> None:
    access = _access(
        FakeClient(),
        client_max_concurrent=MappingProxyType({"team-a": 1}),
        default_max_concurrent=2,
    )
    async with access.admit("Generate", Request(), FakeContext("team-a"), DEADLINE):
        with pytest.raises(ResourceExhaustedError, match="client team-a has 1 calls in flight"):
            await _admit(access, "team-a")
        await _admit(access, "team-b")
    await _admit(access, "team-a")


async def test_anonymous_callers_count_by_address() -> None:
    access = _access(FakeClient(), default_max_concurrent=1)
    async with access.admit("Generate", Request(), FakeContext(None, "10.0.0.1"), DEADLINE):
        busy = r"client anonymous@10\.0\.0\.1 has 1 calls"
        with pytest.raises(ResourceExhaustedError, match=busy):
            async with access.admit("Generate", Request(), FakeContext(None, "10.0.0.1"), DEADLINE):
                pass
        async with access.admit("Generate", Request(), FakeContext(None, "10.0.0.2"), DEADLINE):
            pass


async def test_workers_of_one_stack_share_each_clients_calls_in_flight(
    tables: list[SlotTable],
) -> None:
    # Two gateway processes of one stack, as `saxgw up --workers 2` runs them: one count.
    settings = AccessSettings(
        client_max_concurrent=MappingProxyType({"team-a": 2}), default_max_concurrent=1
    )
    first, second = (
        Access(settings, FakeClient(), SharedCounts(table, "calls"))  # type: ignore[arg-type]
        for table in tables
    )
    async with (
        first.admit("Generate", Request(), FakeContext("team-a"), DEADLINE),
        second.admit("Generate", Request(), FakeContext("team-a"), DEADLINE),
        first.admit("Generate", Request(), FakeContext(None, "10.0.0.1"), DEADLINE),
    ):
        for access in (first, second):
            with pytest.raises(Busy) as busy:
                await _admit(access, "team-a")
            assert busy.value.message == (
                "client team-a has 2 calls in flight, its limit; retry later"
            )
            with pytest.raises(Busy, match=r"client anonymous@10\.0\.0\.1 has 1 calls"):
                async with access.admit("Generate", Request(), FakeContext(None), DEADLINE):
                    pass
        await _admit(second, "team-b")
        async with second.admit("Generate", Request(), FakeContext(None, "10.0.0.2"), DEADLINE):
            pass
    await _admit(second, "team-a")
    assert tables[0].held("calls:team-a") == 0


def _stack_queued(tables: list[SlotTable]) -> int:
    """Calls waiting in the stack's queue for the model, in either process."""
    return tables[0].held("queued:" + MODEL)


def _model_limited(table: SlotTable, max_queued: int = 1, waits: WaitCounts = uncounted) -> Access:
    """A gateway process whose models run one call at once in its stack, ``max_queued`` more
    queued."""
    settings = AccessSettings(model=ModelLimit(max_in_flight=1, max_queued=max_queued))
    models = StackCounts(SharedCounts(table, "models"), SharedCounts(table, "queued"))
    return Access(settings, FakeClient(), models=models, waits=waits)  # type: ignore[arg-type]


def _gauged(metrics: GatewayMetrics) -> WaitCounts:
    """Waiting calls counted in ``metrics``' queue gauge (a published model: its own label)."""
    return metrics.queues(lambda model: True)


def _queue_gauge(metrics: GatewayMetrics) -> float | None:
    """The model's queue gauge as a scrape would find it now (None: no series)."""
    metrics.flush()  # the server's, once a second
    labels = {"gen_ai_request_model": MODEL}
    return metrics.registry.get_sample_value("saxgw_model_calls_queued", labels)


async def test_calls_waiting_for_a_models_slot_show_in_its_queue_gauge() -> None:
    # Only latency and 429s showed a model's queue, after the fact.
    metrics = GatewayMetrics()
    settings = AccessSettings(model=ModelLimit(max_in_flight=1, max_queued=1))
    access = Access(settings, FakeClient(), waits=_gauged(metrics))  # type: ignore[arg-type]
    calls = Calls()
    held = asyncio.create_task(_request(access, calls, ["held"]))
    await until("the first call runs", lambda: calls.began == ["held"])
    assert _queue_gauge(metrics) is None  # a free slot taken: nothing counted
    queued = asyncio.create_task(_request(access, calls, ["queued"]))
    await until("the second call waits", lambda: _waiting(access) == 1)
    assert _queue_gauge(metrics) == 1
    with pytest.raises(Busy):  # the queue full: shed at once, never counted
        await _admit(access, "team-c")
    assert _queue_gauge(metrics) == 1
    calls.end("held")
    await held
    await until("the queued call runs", lambda: calls.began == ["held", "queued"])
    assert _queue_gauge(metrics) == 0
    # A call that runs out of time in the queue, and one whose client leaves, count until then.
    late = asyncio.create_task(_request(access, calls, ["late"], deadline=Deadline.after(2)))
    await until("a call waits until its deadline", lambda: _waiting(access) == 1)
    assert _queue_gauge(metrics) == 1
    with pytest.raises(DeadlineExceededError):
        await late
    assert _queue_gauge(metrics) == 0
    left = asyncio.create_task(_request(access, calls, ["left"]))
    await until("a call waits until its client leaves", lambda: _waiting(access) == 1)
    assert _queue_gauge(metrics) == 1
    left.cancel()
    with pytest.raises(asyncio.CancelledError):
        await left
    assert _queue_gauge(metrics) == 0
    calls.end("queued")
    assert await queued == ["queued"] and calls.began == ["held", "queued"]
    assert _queue_gauge(metrics) == 0 and access._gates == {}


async def test_workers_of_one_stack_share_each_models_slots_and_queue(
    tables: list[SlotTable],
) -> None:
    # Before, each process had its own gate: a model of `max_in_flight: 1` ran a call through
    # each of them at once, and one process refused a call while the other was idle.
    first, second = (_model_limited(table) for table in tables)
    calls = Calls()
    held = asyncio.create_task(_request(first, calls, ["held"]))
    await _settled()
    queued = asyncio.create_task(_request(second, calls, ["queued"]))
    await until("the second process's call queued", lambda: _stack_queued(tables) == 1)
    await asyncio.sleep(0.05)  # a few of its polls of the table: it stays queued
    assert calls.began == ["held"] and not queued.done()
    assert (tables[0].held("models:" + MODEL), tables[1].held("queued:" + MODEL)) == (1, 1)
    for access in (first, second):  # the stack's one place in the queue is taken
        with pytest.raises(Busy) as shed:
            await _admit(access, "team-c")
        assert shed.value.message == (
            f"{MODEL} is at its limit of calls in flight and queued; retry later"
        )
    calls.end("held")
    await held
    # The slot the first process gave back, polled for: POLL_MAX_S (0.01 s) on a quiet host;
    # never polled, the call would wait for its deadline (an hour). 2 s: a loaded host's
    # pauses, far from both (0.5 s stood here).
    await until("the queued call took the freed slot", lambda: len(calls.began) == 2, 2.0)
    assert calls.began == ["held", "queued"]
    assert tables[0].held("queued:" + MODEL) == 0
    calls.end("queued")
    assert await queued == ["queued"]
    assert tables[1].held("models:" + MODEL) == 0
    assert first._gates == {} and second._gates == {}
    # A single process (no table) keeps a gate of its own, the table untouched.
    alone = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=0))
    async with alone.admit("Generate", Request(), FakeContext("a"), DEADLINE):
        assert type(alone._gates[MODEL]) is Gate


async def test_each_worker_counts_the_calls_it_has_queued_in_the_stacks_queue(
    tables: list[SlotTable],
) -> None:
    # Each process's gauge counts its own waiting calls; the ops server's scrape adds them up
    # (livesum): the stack's queue.
    gauges = [GatewayMetrics(), GatewayMetrics()]
    first, second = (
        _model_limited(table, max_queued=2, waits=_gauged(metrics))
        for table, metrics in zip(tables, gauges, strict=True)
    )
    calls = Calls()
    held = asyncio.create_task(_request(first, calls, ["held"]))
    await until("the first process's call runs", lambda: calls.began == ["held"])
    queued = asyncio.create_task(_request(second, calls, ["queued"]))
    await until("the second process's call queued", lambda: _stack_queued(tables) == 1)
    assert [_queue_gauge(m) for m in gauges] == [None, 1]
    also = asyncio.create_task(_request(first, calls, ["also"]))
    await until("a call queued in each process", lambda: _stack_queued(tables) == 2)
    assert [_queue_gauge(m) for m in gauges] == [1, 1]
    calls.end("held")
    await held
    await until("a queued call runs", lambda: len(calls.began) == 2)
    assert sum(_queue_gauge(m) or 0 for m in gauges) == 1
    calls.end_all()
    await until("the other runs", lambda: len(calls.began) == 3)
    calls.end_all()
    assert (await queued, await also) == (["queued"], ["also"])
    assert [_queue_gauge(m) for m in gauges] == [0, 0]


async def test_a_call_queued_in_another_worker_takes_the_slot_a_request_passes_on(
    tables: list[SlotTable], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The slot is the other process's for `HANDOFF_S` (20 ms), its queued call asking every
    # 10 ms at most: an event loop paused past 20 ms (6 test processes and 2 busy loops on 2
    # cores did) gave it to the request's own next call. 1 s, as slottable's STUCK_S, keeps
    # what the test checks; the request's next call waits it out at the end.
    monkeypatch.setattr(stackgate_module, "HANDOFF_S", 1.0)
    first, second = (_model_limited(table) for table in tables)
    calls = Calls()
    request = asyncio.create_task(_request(first, calls, [0, 1]))
    await _settled()
    queued = asyncio.create_task(_request(second, calls, ["queued"]))
    await until("the second process's call queued", lambda: _stack_queued(tables) == 1)
    calls.end(0)
    while len(calls.began) < 2:
        await asyncio.sleep(0.001)
    assert calls.began == [0, "queued"] and calls.running == 1
    calls.end("queued")
    await queued
    while len(calls.began) < 3:  # the request's next call, in the slot given back
        await asyncio.sleep(0.001)
    calls.end(1)
    assert await request == [0, 1] and calls.peak == 1
    assert tables[0].held("models:" + MODEL) == 0 and first._gates == {}


async def test_a_call_out_of_time_in_the_stacks_queue_gives_its_place_back(
    tables: list[SlotTable],
) -> None:
    # A place in the stack's queue is a row of the shared table: one kept by a call that ran
    # out of time there would shed every later call of the model, in every process, for good.
    first, second = (_model_limited(table) for table in tables)
    calls = Calls()
    held = asyncio.create_task(_request(first, calls, ["held"]))
    await _settled()
    # Its deadline outlasts the first read of the model's ACLs in this process (which a loaded
    # host once kept past 0.05 s in the test beside), then ends in the queue.
    with pytest.raises(DeadlineExceededError, match="waiting in the model's queue"):
        await _request(second, calls, ["late"], deadline=Deadline.after(0.5))
    assert (tables[0].held("queued:" + MODEL), tables[1].held("queued:" + MODEL)) == (0, 0)
    queued = asyncio.create_task(_request(second, calls, ["queued"]))  # its place is free
    await until("the call queued", lambda: _stack_queued(tables) == 1)
    calls.end("held")
    await held
    while len(calls.began) < 2:
        await asyncio.sleep(0.001)
    calls.end("queued")
    assert await queued == ["queued"]
    assert calls.began == ["held", "queued"] and calls.peak == 1
    assert tables[1].held("models:" + MODEL) == 0 and second._gates == {}


async def test_a_worker_gives_a_freed_slot_to_a_call_queued_before_its_own(
    tables: list[SlotTable],
) -> None:
    # Before, a process woke its own first queued call when it freed a slot, at once, ahead
    # of the other process's poll: while its own queue lasted, a call queued first in the
    # other process never ran (under steady load, until its deadline).
    first, second = (_model_limited(table, max_queued=2) for table in tables)
    calls = Calls()
    held = asyncio.create_task(_request(second, calls, ["held"]))
    await _settled()
    early = asyncio.create_task(_request(first, calls, ["early"]))
    await until("the first process's call queued", lambda: _stack_queued(tables) == 1)
    late = asyncio.create_task(_request(second, calls, ["late"]))
    await until("the second process's call queued", lambda: _stack_queued(tables) == 2)
    calls.end("held")
    await held
    while len(calls.began) < 2:
        await asyncio.sleep(0.001)
    assert calls.began == ["held", "early"]
    calls.end("early")
    await early
    while len(calls.began) < 3:  # the other process's call, queued meanwhile
        await asyncio.sleep(0.001)
    calls.end("late")
    await late
    assert calls.began == ["held", "early", "late"] and calls.peak == 1


async def test_clients_without_a_limit_are_not_counted(tmp_path: Path) -> None:
    slottable.create(str(tmp_path / "slots"), workers=2)
    table = SlotTable(str(tmp_path / "slots"), 0)
    try:
        counts = SharedCounts(table, "calls")
        access = Access(AccessSettings(), FakeClient(), counts)  # type: ignore[arg-type]
        async with access.admit("Generate", Request(), FakeContext("team-a"), DEADLINE):
            assert counts.held("team-a") == 0
            assert access._client_slot("team-a", FakeContext("team-a")) is UNLIMITED
            assert access._client_slot(None, FakeContext(None)) is UNLIMITED
    finally:
        table.close()


async def test_multimodal_calls_honour_the_mm_generate_acl() -> None:
    # `saxutil setacl /sax/test/mm mm.generate acl/readers` must hold for MultimodalGenerate
    # as `lm.generate` does for Generate.
    access = _access(
        FakeClient({"mm.generate": "acl/readers"}),
        groups=MappingProxyType({"readers": frozenset({"team-a"})}),
    )
    await _admit(access, "team-a", method="MultimodalGenerate")
    with pytest.raises(PermissionDeniedError, match=r"mm\.generate on /sax/test/lm is limited"):
        await _admit(access, "bob", method="MultimodalGenerate")


@dataclass
class CustomRequest:
    method_name: str
    model: str = MODEL


async def test_a_custom_call_honours_the_acl_of_the_method_it_names() -> None:
    # As upstream's model servers check it: a Custom call is the model's own method of its
    # method_name, under that method's ACL; another method of the model has its own.
    access = _access(
        FakeClient({"echo": "acl/readers"}),
        groups=MappingProxyType({"readers": frozenset({"team-a"})}),
    )
    async with access.admit("Custom", CustomRequest("echo"), FakeContext("team-a"), DEADLINE):
        pass
    with pytest.raises(PermissionDeniedError, match=r"^echo on /sax/test/lm is limited"):
        async with access.admit("Custom", CustomRequest("echo"), FakeContext("bob"), DEADLINE):
            pass
    async with access.admit("Custom", CustomRequest("other"), FakeContext("bob"), DEADLINE):
        pass


@pytest.mark.parametrize("method", sorted(DATA_METHODS))
async def test_every_model_call_counts_against_the_client_and_model_limits(method: str) -> None:
    access = _access(
        FakeClient(),
        default_max_concurrent=1,
        model=ModelLimit(max_in_flight=1, max_queued=0),
    )
    async with access.admit(method, Request(), FakeContext("team-a"), DEADLINE):
        with pytest.raises(ResourceExhaustedError, match="client team-a has 1 calls in flight"):
            await _admit(access, "team-a", method=method)
        with pytest.raises(ResourceExhaustedError, match="at its limit"):
            await _admit(access, "team-b", method=method)


async def test_a_call_queued_past_its_deadline_gives_back_what_it_held(tmp_path: Path) -> None:
    # Its deadline bounds a call's wait in the model's queue: DEADLINE_EXCEEDED then, a moment
    # before grpc's own deadline would end it with a bare status. The client's count (here a
    # stack's shared table) and the model's slots and queue are as they were before it.
    slottable.create(str(tmp_path / "slots"), workers=2)
    table = SlotTable(str(tmp_path / "slots"), 0)
    counts = SharedCounts(table, "calls")
    settings = AccessSettings(
        default_max_concurrent=3, model=ModelLimit(max_in_flight=1, max_queued=1)
    )
    access = Access(settings, FakeClient(), counts)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        async with access.admit("Generate", Request(), FakeContext("team-a"), DEADLINE):
            for _ in range(2):
                started = loop.time()
                with pytest.raises(DeadlineExceededError) as late:
                    await _admit(access, "team-a", deadline=Deadline.after(0.05))
                # Its 0.05 s; it waited for the held call's (an hour) before: 2 s, not 0.5 s,
                # leaves a loaded host's pauses room.
                assert 0.04 < loop.time() - started < 2.0
                assert late.value.message == (
                    f"call to {MODEL} exceeded its deadline waiting in the model's queue for a "
                    "free slot"
                )
                assert counts.held("team-a") == 1  # the holder's
            # The queue's one place is free again; a call that waits there runs next.
            queued = asyncio.create_task(_admit(access, "team-a"))
            await until("the call queued", lambda: _waiting(access) == 1)
            assert not queued.done() and counts.held("team-a") == 2
        await queued
        assert counts.held("team-a") == 0 and access._gates == {}
        # No slot was given back twice: the model still runs one call at a time.
        async with access.admit("Generate", Request(), FakeContext("team-b"), DEADLINE):
            with pytest.raises(DeadlineExceededError):
                await _admit(access, "team-a", deadline=Deadline.after(0.01))
    finally:
        table.close()


async def test_a_stream_queued_past_the_end_of_its_retries_is_told_to_back_off() -> None:
    # A stream's deadline is its whole generation's (ten minutes by default), but a model too
    # busy to start it answers when a unary call's wait would end: a 429 with Retry-After.
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    loop = asyncio.get_running_loop()
    async with access.admit("GenerateStream", Request(), FakeContext("a"), DEADLINE):
        started = loop.time()
        with pytest.raises(Busy) as shed:
            await _admit(access, "b", "GenerateStream", deadline=Deadline.after(600, 0.05))
        # The retries' 0.05 s; the stream's 600 s before: 2 s, not 0.5 s, leaves a loaded
        # host's pauses room.
        assert 0.04 < loop.time() - started < 2.0
        assert shed.value.message == (
            f"{MODEL} is at its limit of calls in flight: no slot came free in time; retry later"
        )
        assert shed.value.metadata == (("retry-after", "1"),)
    assert access._gates == {}  # nothing held, nothing left waiting


def test_labels_are_bounded() -> None:
    access = _access(FakeClient(), known_clients=frozenset({"ops"}))
    assert [access.label(c) for c in ("ops", "jwt-subject-123", None)] == [
        "ops",
        "other",
        "anonymous",
    ]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The access checks' monotonic clock, set by the test (clock[0] = seconds)."""
    now = [0.0]
    monkeypatch.setattr(acls_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


async def _read_at_zero(client: FakeClient) -> Access:
    """Checks whose cache holds the model's ACLs (team-a's), read at time 0 for a second."""
    access = _access(client, acl_cache_seconds=1.0)
    await _admit(access, "team-a")
    return access


async def test_stale_acls_answer_at_once_while_one_background_fetch_renews_them(
    clock: list[float],
) -> None:
    client = FakeClient({"lm.generate": "acl/team-a"})
    access = await _read_at_zero(client)
    assert client.calls == 1

    client.acls = {"lm.generate": "acl/team-b"}  # changed at the admin
    clock[0] = 1.5  # stale, but by less than its lifetime: answered from the cache...
    await _admit(access, "team-a")
    await _admit(access, "team-a")
    await asyncio.sleep(0)
    assert client.calls == 2  # ...while one fetch (not one per call) renews it
    with pytest.raises(PermissionDeniedError, match="limited to acl/team-b"):
        await _admit(access, "team-a")  # the renewed ACL applies from then on
    assert client.calls == 2

    client.acls = {}
    clock[0] = 10.0  # older than two lifetimes: the call waits for the admin's answer
    await _admit(access, "team-a")
    assert client.calls == 3


async def test_acls_last_read_stay_in_force_while_the_admin_is_unreachable(
    clock: list[float],
) -> None:
    # Before, every data call failed UNAVAILABLE two seconds into an admin outage, however
    # healthy the model servers were: its ACL check waited for the admin.
    client = FailingAfterFirst({"lm.generate": "acl/team-a"})
    access = await _read_at_zero(client)
    clock[0] = 1.5
    await _admit(access, "team-a")  # stale: answered; its renewal fails in the background
    await asyncio.sleep(0)
    for now in (2.5, 30.0, 600.0):  # long past two lifetimes: still checked, against them
        clock[0] = now
        await _admit(access, "team-a")
        with pytest.raises(PermissionDeniedError, match="limited to acl/team-a"):
            await _admit(access, "team-b")  # the check is never skipped
        await asyncio.sleep(0)
    assert client.calls > 3  # the admin was asked again and again, in the background
    # A model whose ACLs were never read fails closed.
    with pytest.raises(UnavailableError, match="admin unreachable"):
        await _admit(access, "team-a", model="/sax/test/other")

    client.answering = True
    client.acls = {"lm.generate": "acl/team-b"}  # the admin is back, with a change
    await _admit(access, "team-a")  # answered from the cache while a read renews it
    await asyncio.sleep(0)
    with pytest.raises(PermissionDeniedError, match="limited to acl/team-b"):
        await _admit(access, "team-a")
    clock[0] = 610.0  # and once that is too old, calls wait for the admin again
    client.acls = {}
    await _admit(access, "team-a")


async def test_a_call_just_after_a_read_finds_the_admin_unreachable_does_not_wait(
    clock: list[float],
) -> None:
    # The read renewing stale ACLs fails: the admin is unreachable, so the ACLs at hand stay
    # in force and calls answer from them. A call that came the turn of the loop after the
    # read ended, before its done callback had run, found the read over and the ACLs not in
    # force yet, and waited a moment (2 s) for a read of its own: a second stall in one
    # outage (tests/faults/test_admin.py, once in CI).
    client = FailingOnCue({"lm.generate": "acl/team-a"})
    access = await _read_at_zero(client)
    clock[0] = 1.5
    await _admit(access, "team-a")  # stale: answered; a read renews them in the background
    await asyncio.sleep(0)
    assert client.calls == 2  # out, unanswered
    clock[0] = 6.5  # two lifetimes old; the read is reported unreachable (5 s)
    client.cue.set()  # the read ends at its next step...
    call = asyncio.create_task(_admit(access, "team-a"))  # ...and this call begins right after
    for _ in range(10):
        await asyncio.sleep(0)
    assert call.done(), "the call waited for the admin"
    call.result()
    with pytest.raises(PermissionDeniedError, match="limited to acl/team-a"):
        await _admit(access, "team-b")  # checked against the ACLs at hand, as before


async def test_an_acl_set_here_holds_while_the_admin_is_unreachable_after_it(
    clock: list[float],
) -> None:
    # SetAcl through this gateway, then the admin goes: the ACLs kept in force for it are
    # the ones read before, with the change this gateway made (never the old ACL).
    client = FailingAfterFirst({"lm.generate": "acl/team-a", "lm.score": "acl/team-a"})
    access = await _read_at_zero(client)
    access.changed(MODEL, ("lm.generate", "acl/team-b"))
    with pytest.raises(PermissionDeniedError, match=r"lm.generate on .* limited to acl/team-b"):
        await _admit(access, "team-a")  # its read anew failed: the ACLs at hand answer
    await _admit(access, "team-b")
    with pytest.raises(PermissionDeniedError, match=r"lm.score on .* limited to acl/team-a"):
        await _admit(access, "team-b", method="Score")
    access.changed(MODEL, ("lm.generate", ""), admin_away=True)  # cleared; admin unreachable
    await _admit(access, "team-c")


async def test_an_acl_read_the_admin_refuses_still_fails_calls(clock: list[float]) -> None:
    client = FailingAfterFirst({"lm.generate": "acl/team-a"}, error=PermissionDeniedError)
    access = await _read_at_zero(client)
    clock[0] = 2.5
    with pytest.raises(PermissionDeniedError, match="refused"):
        await _admit(access, "team-a")  # an answer, not an unreachable admin: fails closed


@dataclass
class FailingAfterFirst(FakeClient):
    """Answers the first read, then fails every read with ``error`` until ``answering``."""

    error: type[Exception] = UnavailableError
    answering: bool = False

    async def list_detail(self, model: str, *, timeout: float) -> Any:
        if self.calls and not self.answering:
            self.calls += 1
            raise self.error("admin unreachable" if self.error is UnavailableError else "refused")
        return await super().list_detail(model, timeout=timeout)


@dataclass
class FailingOnCue(FakeClient):
    """Answers the first read; the second fails UNAVAILABLE once ``cue`` is set; later ones
    never answer (an admin that takes calls and says nothing)."""

    cue: asyncio.Event = field(default_factory=asyncio.Event)

    async def list_detail(self, model: str, *, timeout: float) -> Any:
        if not self.calls:
            return await super().list_detail(model, timeout=timeout)
        self.calls += 1
        if self.calls == 2:
            await self.cue.wait()
            raise UnavailableError("admin unreachable")
        await asyncio.Event().wait()
        raise AssertionError("never answered")


@dataclass
class HangingAfterFirst(FakeClient):
    """Answers the first read (none if ``hung_from_start``); later reads wait for ``answer``:
    an admin that takes calls and says nothing (SIGSTOP)."""

    hung_from_start: bool = False
    answer: asyncio.Event = field(default_factory=asyncio.Event)

    async def list_detail(self, model: str, *, timeout: float) -> Any:
        if self.calls or self.hung_from_start:
            await self.answer.wait()
        return await super().list_detail(model, timeout=timeout)


def _acl_wait(model: str = MODEL) -> str:
    return f"call to {model} exceeded its deadline reading the model's ACLs from the admin"


async def test_a_call_waits_for_acls_never_read_until_its_own_deadline() -> None:
    # Before, it waited for the ACL read's own 10 s, whatever its deadline. Calls that wait
    # for one read each stop at their own deadline; the read goes on for those still waiting.
    client = HangingAfterFirst({}, hung_from_start=True)
    access = _access(client)
    loop = asyncio.get_running_loop()
    # Timed before: deadlines of 0.05 s and 1 s, the short one's end bounded by the longer's
    # (`< 1.0 and not longer.done()`), which a loop held up that long (a loaded host) fails.
    # Now the other call waits with no deadline near: that it still waits once the short one
    # ended is a state, not a race, and the read's answer then reaches it.
    started = loop.time()
    short = asyncio.create_task(_admit(access, "team-a", deadline=Deadline.after(0.05)))
    longer = asyncio.create_task(_admit(access, "team-a"))  # its deadline an hour away
    with pytest.raises(DeadlineExceededError) as late:
        async with asyncio.timeout(5):  # a call that waits for the read hangs: no answer comes
            await short
    assert late.value.message == _acl_wait()
    assert 0.04 < loop.time() - started < 5.0  # its 0.05 s, not the read's time (10 s before)
    await _settled()
    assert not longer.done()  # the read goes on for the call still waiting
    third = asyncio.create_task(_admit(access, "team-a"))
    await asyncio.sleep(0.01)
    client.answer.set()
    await longer  # answered by the same read
    await third
    assert client.calls == 1


async def test_a_call_waits_for_expired_acls_no_longer_than_its_deadline(
    clock: list[float],
) -> None:
    # ACLs older than two lifetimes are waited for, up to 2 s before the ones at hand answer;
    # a call due sooner stopped only after those 2 s, and then ran.
    client = HangingAfterFirst({"lm.generate": "acl/team-a"})
    access = await _read_at_zero(client)
    clock[0] = 2.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeadlineExceededError) as late:
        await _admit(access, "team-a", deadline=Deadline.after(0.05))
    assert late.value.message == _acl_wait()  # before, the call ran after the moment's 2 s
    assert loop.time() - started < 1.5  # its 0.05 s; the moment's 2 s before (0.5 s stood here)
    client.answer.set()
    await _admit(access, "team-a")


@dataclass
class CellOfHungAdmin(FakeClient):
    """Answers the first read of each of a cell's models; then hangs, a listing of the cell
    too (SIGSTOP): an admin gone silent once a gateway keeps the ACLs of many of its models."""

    read: set[str] = field(default_factory=set)
    listings: int = 0

    async def list_detail(self, model: str, *, timeout: float) -> Any:
        self.calls += 1
        if model in self.read:
            await asyncio.Event().wait()
        self.read.add(model)
        return type("Detail", (), {"acls": dict(self.acls)})()

    async def list_all(self, cell: str, *, timeout: float) -> Any:
        self.listings += 1
        await asyncio.Event().wait()


async def test_the_moment_for_acls_a_cell_listing_renews_counts_from_the_listing(
    clock: list[float],
) -> None:
    # Past two lifetimes, a call waits for a read of the model's ACLs for a moment (2 s)
    # counted from when the read began. A cell whose models' ACLs a listing renews had no
    # read of the model out: the first call then waited 2 s from its own start, for a read
    # of its own, not what was left of the listing's moment (a hung admin's stall, doubled).
    client = CellOfHungAdmin({"lm.generate": "acl/team-a"})
    access = _access(client, acl_cache_seconds=1.0)
    models = [f"/sax/test/m{i}" for i in range(acls_module.CELL_RENEWAL_MODELS)]
    for model in models:
        await _admit(access, "team-a", model=model)
    clock[0] = 1.5  # stale: answered while the cell's listing renews them all
    await _admit(access, "team-a", model=models[0])
    await _settled()
    assert (client.listings, client.calls) == (1, len(models))
    clock[0] = 1.6  # two models read once the listing began: it does not renew them
    await _admit(access, "team-a", model="/sax/test/late")
    await _admit(access, "team-a", model="/sax/test/later")
    clock[0] = 2.7  # stale: answered while a read of its own renews it
    await _admit(access, "team-a", model="/sax/test/later")
    await _settled()
    assert client.calls == len(models) + 3
    clock[0] = 3.65  # past two lifetimes of each, and past the listing's moment (1.5 + 2)
    async with asyncio.timeout(10):  # a moment of its own ends too, after 2 s: not the check
        await _admit(access, "team-a", model=models[1])
    assert client.calls == len(models) + 3  # answered at once, with no read of its own
    # Not called while stale by less than a lifetime: its moment is that of its own read.
    late = asyncio.create_task(_admit(access, "team-a", model="/sax/test/late"))
    await _settled()
    assert client.calls == len(models) + 4 and not late.done()
    late.cancel()


# The SaxGateway RPCs that call no model's data method: the admin's and the gateway's own.
NOT_MODEL_CALLS = {
    "GetAcl",
    "GetInfo",
    "GetModel",
    "GetStats",
    "ListCell",
    "ListCells",
    "ListModels",
    "PublishModel",
    "SetAcl",
    "UnpublishModel",
    "UpdateModel",
    "WaitForReady",
    "WatchAddresses",
}


def test_every_rpc_is_a_model_call_or_named_as_none() -> None:
    # An RPC left out of `SAX_METHODS` would pass no ACL and take no slot, unseen.
    names = {m.name for m in pb.DESCRIPTOR.services_by_name["SaxGateway"].methods}
    assert names - access_module.MODEL_CALLS == NOT_MODEL_CALLS


def test_every_method_a_model_acl_can_name_has_an_rpc() -> None:
    # A method Sax's servers serve but no RPC calls is out of reach through the gateway:
    # vm.video_to_token and vm.token_to_video were. mm.generate_stream still is.
    reached = set(access_module.SAX_METHODS.values())
    assert ACL_METHODS - reached == {"mm.generate_stream"}


def test_every_method_checked_here_takes_an_acl() -> None:
    # SetAcl takes the methods of `names.ACL_METHODS`; the gateway checks ACLs on its own
    # calls by `SAX_METHODS`. mm.score and mm.embed were checked here yet took no ACL (as
    # upstream's admin validator has it): no ACL could ever limit them.
    checked = set(access_module.SAX_METHODS.values())
    assert checked - ACL_METHODS == set()


async def test_a_change_its_caller_left_has_its_acls_read_again_as_it_lands() -> None:
    # A SetAcl whose caller left (a deadline of a few ms) is finished by the admin later: the
    # ACLs a call read anew in between were the old ones, kept for their whole lifetime (20 s
    # here), so a revoked ACL went unenforced, by whichever gateway process had read them.
    client = FakeClient({})
    access = _access(client, acl_cache_seconds=20.0)
    await _admit(access, "team-a")
    settings = GatewaySettings(client=ClientSettings(sax_root="/x"))
    interceptor = AccessInterceptor(access, settings)
    loop = asyncio.get_running_loop()

    async def set_acl(request: object, context: object) -> object:
        def landed() -> None:
            client.acls = {"lm.generate": "acl/team-b"}  # the admin's save lands later

        loop.call_later(0.2, landed)
        raise asyncio.CancelledError  # its caller left first

    change = interceptor.wrap_unary("/saxgateway.v1.SaxGateway/SetAcl", set_acl)
    request = pb.SetAclRequest(name=MODEL, method="lm.generate", acl="acl/team-b")
    with pytest.raises(asyncio.CancelledError):
        await change(request, FakeContext("ops"))
    await _admit(access, "team-a")  # read anew: the old ACLs, the change not yet landed
    await asyncio.sleep(0.8)
    with pytest.raises(PermissionDeniedError, match="limited to acl/team-b"):
        await _admit(access, "team-a")


@pytest.mark.parametrize(
    ("error", "wait"),
    [
        (DeadlineExceededError("the admin was slow to answer"), 0.0),
        # The admin away: read again once it may be back (`_SETTLE_S`: 0.5 s first).
        (UnavailableError("the admin went away before its reply"), 0.8),
    ],
)
async def test_a_change_that_failed_but_may_have_been_made_has_its_acls_read_again(
    error: Exception, wait: float
) -> None:
    # A SetAcl that failed so may have been made all the same (its reply lost): the ACLs kept
    # for the model must be read anew, or a revoked one goes unenforced for their whole
    # lifetime (20 s here; up to an hour).
    client = FakeClient({})
    access = _access(client, acl_cache_seconds=20.0)
    await _admit(access, "team-a")
    settings = GatewaySettings(client=ClientSettings(sax_root="/x"))
    interceptor = AccessInterceptor(access, settings)

    async def set_acl(request: object, context: object) -> object:
        client.acls = {"lm.generate": "acl/team-b"}  # saved by the admin
        raise error

    change = interceptor.wrap_unary("/saxgateway.v1.SaxGateway/SetAcl", set_acl)
    request = pb.SetAclRequest(name=MODEL, method="lm.generate", acl="acl/team-b")
    with pytest.raises(type(error)):
        await change(request, FakeContext("ops"))
    await asyncio.sleep(wait)
    with pytest.raises(PermissionDeniedError, match="limited to acl/team-b"):
        await _admit(access, "team-a")


@dataclass
class _SlowHeaders(FakeContext):
    """A stream's context whose headers take a while to go out (a slow peer, a busy loop)."""

    def time_remaining(self) -> float | None:
        return None

    async def send_initial_metadata(self, metadata: object) -> None:
        await asyncio.sleep(0.3)


async def test_a_stream_whose_caller_leaves_as_it_is_admitted_frees_the_models_slot() -> None:
    # Admitted while its keep-alive's headers were going out, and cut short by its caller
    # before they had: its slots were taken, but a flag set after the admission said none,
    # and the model's one slot was held for good (each later call waited out its deadline).
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    settings = GatewaySettings(client=ClientSettings(sax_root="/x"), stream_keepalive=0.1)
    servicer = SaxGatewayServicer(FakeClient(), settings, StreamSlots(100), access)  # type: ignore[arg-type]
    holder = access.admit("Generate", Request(), FakeContext("ops"), DEADLINE)
    await holder.__aenter__()  # another call has the model's one slot
    context = _SlowHeaders("team-a")
    request = pb.GenerateStreamRequest(model=MODEL, query="x")
    # As the access interceptor does.
    deadlines.fix(context, request, settings, stream=True)  # type: ignore[arg-type]
    stream = servicer.GenerateStream(request, context)  # type: ignore[arg-type]
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.15)  # queued: its headers are going out
    await holder.__aexit__(None, None, None)  # the slot frees: the stream is admitted
    await asyncio.sleep(0.05)
    first.cancel()  # its caller leaves
    with pytest.raises(asyncio.CancelledError):
        await first
    await _admit(access, "ops", deadline=Deadline.after(1.0))  # the slot is free
    assert access._gates == {}


async def test_a_stream_without_a_query_is_refused_before_it_queues() -> None:
    # Checked once admitted, a malformed stream queued past the keep-alive had its 200 out
    # before it learned (in-band) that it was malformed; HTTP clients act on the status.
    access = _access(FakeClient(), model=ModelLimit(max_in_flight=1, max_queued=1))
    settings = GatewaySettings(client=ClientSettings(sax_root="/x"), stream_keepalive=0.1)
    servicer = SaxGatewayServicer(FakeClient(), settings, StreamSlots(100), access)  # type: ignore[arg-type]
    async with access.admit("Generate", Request(), FakeContext("ops"), DEADLINE):
        context = _SlowHeaders("team-a")
        request = pb.GenerateStreamRequest(model=MODEL, query="")
        deadlines.fix(context, request, settings, stream=True)  # type: ignore[arg-type]
        stream = servicer.GenerateStream(request, context)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="query"):
            await asyncio.wait_for(anext(stream), 0.05)


async def test_a_stream_refused_its_model_is_told_so_before_its_request_is_checked() -> None:
    # As a unary call is: a client that may not use the model got the 400 of its request first,
    # and, that mended, the 403.
    access = _access(FakeClient(), client_models={"team-a": ("/sax/test/other*",)})
    settings = GatewaySettings(client=ClientSettings(sax_root="/x"))
    servicer = SaxGatewayServicer(FakeClient(), settings, StreamSlots(100), access)  # type: ignore[arg-type]
    context = _SlowHeaders("team-a")
    request = pb.GenerateStreamRequest(model=MODEL, query="")
    deadlines.fix(context, request, settings, stream=True)  # type: ignore[arg-type]
    with pytest.raises(PermissionDeniedError, match="client team-a may not use /sax/test/lm"):
        await anext(servicer.GenerateStream(request, context))  # type: ignore[arg-type]
