"""A call's one deadline: fixed where a data call enters (the access checks), the same one for
the servicer; computed anew for a call that had none fixed."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import pytest
from google.protobuf import duration_pb2
from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import ClientSettings, InvalidArgumentError
from gateway.common.deadline import Deadline, now
from gateway.common.errors import DeadlineExceededError
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service import _deadlines as deadlines

SETTINGS = GatewaySettings(client=ClientSettings(sax_root="/tmp/root"), default_timeout=30)


@dataclass
class _Context:
    remaining: float | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    def time_remaining(self) -> float | None:
        return self.remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def _context(remaining: float | None = None) -> Context:
    """A servicer context whose gRPC deadline is ``remaining`` seconds away (None: none)."""
    return cast(Context, _Context(remaining))


def _generate(seconds: int | None = None) -> pb.GenerateRequest:
    request = pb.GenerateRequest(model="/sax/test/lm", query="q")
    if seconds is not None:
        request.timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))
    return request


def _leaves(make: Callable[[], Deadline], seconds: float, retry: float | None = None) -> bool:
    """Whether ``make()``'s deadline (and its end of retries, ``retry``) lies ``seconds`` from
    the clock read just around the call. It was read once before a run of calls and compared
    with ``abs=0.05``: a loaded host's pause past 50 ms between two of them would fail the
    test, where a right deadline is microseconds off and a wrong one (the margin, another
    source) 0.1 s or more."""
    before = now()
    deadline = make()
    after = now()
    ends = [(deadline.at, seconds)] + ([] if retry is None else [(deadline.retry_by, retry)])
    return all(before + s - 1e-3 <= at <= after + s + 1e-3 for at, s in ends)


def test_the_soonest_of_grpcs_deadline_the_body_and_the_default() -> None:
    assert _leaves(lambda: deadlines.call_deadline(_context(), _generate(), SETTINGS), 30)
    assert _leaves(lambda: deadlines.call_deadline(_context(), _generate(2), SETTINGS), 2)
    # A moment before grpc's own (REPORT_MARGIN_S: a tenth of it here), so the gateway reports it.
    assert _leaves(lambda: deadlines.call_deadline(_context(1.0), _generate(2), SETTINGS), 0.9)
    stream = partial(deadlines.call_deadline, _context(), _generate(), SETTINGS, stream=True)
    assert _leaves(stream, 600, retry=30)
    with pytest.raises(InvalidArgumentError, match="timeout: must be positive"):
        deadlines.call_deadline(_context(), _generate(0), SETTINGS)


def test_a_grpc_timeout_envoy_relays_is_the_gateways_alone_to_keep() -> None:
    # An HTTP stream's grpc-timeout, which Envoy hands on as x-saxgw-grpc-timeout so that grpc
    # does not cut the stream before its last event: all of it, with no margin.
    def relayed(value: str) -> Context:
        return cast(Context, _Context(metadata=(("x-saxgw-grpc-timeout", value),)))

    for value, request, seconds in (
        ("1500m", _generate(), 1.5),
        ("1S", _generate(2), 1),
        ("0001S", _generate(), 1),
        ("1H", _generate(), 30),
    ):
        call = partial(deadlines.call_deadline, relayed(value), request, SETTINGS)
        assert _leaves(call, seconds), value
    stream = partial(deadlines.call_deadline, relayed("2S"), _generate(), SETTINGS, stream=True)
    assert _leaves(stream, 2, retry=2)
    for bad in ("0S", "1s", "123456789S", "-1S", "soon", ""):
        with pytest.raises(InvalidArgumentError, match="grpc-timeout: not a gRPC timeout"):
            deadlines.call_deadline(relayed(bad), _generate(), SETTINGS)


def test_the_callers_deadline_counts_from_when_envoy_began_to_receive_the_call() -> None:
    # Envoy hands a call on once its body has come whole, and says how long that took
    # (x-saxgw-receiving-ms): a body sent over 1.5 s leaves a 2 s deadline 0.5 s, whichever
    # way the caller gave it; the gateway's own default is its own. Before, the deadline
    # began when the gateway got the call: the caller's 504 came 1.5 s late.
    def received(ms: str, remaining: float | None = None, *metadata: tuple[str, str]) -> Context:
        return cast(Context, _Context(remaining, (("x-saxgw-receiving-ms", ms), *metadata)))

    def left(context: Context, request: pb.GenerateRequest) -> tuple[float, float]:
        """The least and most the deadline can leave, from the clock read around the call,
        so that a loaded host's pauses between calls do not count."""
        before = now()
        deadline = deadlines.call_deadline(context, request, SETTINGS)
        after = now()
        return deadline.at - after, deadline.at - before

    def leaves(context: Context, request: pb.GenerateRequest, seconds: float) -> bool:
        least, most = left(context, request)
        return least - 1e-3 <= seconds <= most + 1e-3

    relayed = ("x-saxgw-grpc-timeout", "2S")
    for context, request, seconds in (
        (received("1500", None, relayed), _generate(), 0.5),
        (received("1500"), _generate(2), 0.5),
        (received("1500", 2.0), _generate(), 0.45),  # grpc's, less a tenth of what is left
    ):
        assert leaves(context, request, seconds), (request, seconds)
    assert leaves(received("1500"), _generate(), 30)
    # Past already: the call fails there, and says why. It failed at its first wait, named
    # as the cause: "reading the model's ACLs from the admin", of a healthy admin.
    spent: list[tuple[Context, pb.GenerateRequest | None]] = [
        (received("2500", None, ("x-saxgw-grpc-timeout", "100m")), _generate()),  # the least
        (received("2500", None, relayed), _generate()),
        (received("2500"), _generate(2)),
        (received("2500", 2.0), _generate()),
        (received("2500", None, relayed), None),
    ]
    for context, maybe in spent:
        with pytest.raises(DeadlineExceededError) as raised:
            deadlines.call_deadline(context, maybe, SETTINGS, stream=True)
        assert str(raised.value) == (
            "the call exceeded its deadline while its request was being received "
            "(it took 2.5 s to arrive)"
        )
    # A deadline the caller gave as none at all, or as a nanosecond, is a deadline passed,
    # not a slow request, however long its few bytes took to arrive (Envoy counts in ms).
    for context in (
        _context(0.0),
        received("1", None, ("x-saxgw-grpc-timeout", "1n")),
        received("150", None, ("x-saxgw-grpc-timeout", "50m")),  # a loaded host's 0.15 s
    ):
        late = deadlines.call_deadline(context, _generate(), SETTINGS)
        with pytest.raises(DeadlineExceededError, match="Generate exceeded its deadline"):
            late.timeout("Generate")
    # What is not a count of milliseconds (Envoy sends none when it forwarded the call before
    # its body) counts as no wait.
    for value in ("", "-", "1.5", "-100", "1e3", "9999999999"):
        assert leaves(received(value, None, relayed), _generate(), 2), value


def test_the_servicer_gets_the_deadline_fixed_where_the_call_entered() -> None:
    def call() -> None:
        context = _context()
        entered = deadlines.fix(context, _generate(2), SETTINGS)
        # What the servicer asks for later is that one, not 2 s from then.
        assert deadlines.fixed(context, _generate(2), SETTINGS) is entered
        # Another call's (say one that copied this call's variables) is its own.
        other = deadlines.fixed(_context(), _generate(5), SETTINGS)
        assert other is not entered and other.at > entered.at + 2

    contextvars.Context().run(call)
    # A call that had none fixed (not a data call) gets its own.
    assert _leaves(lambda: deadlines.fixed(_context(), None, SETTINGS), 30)


async def test_each_call_task_has_its_own() -> None:
    async def call(seconds: int) -> bool:
        context = _context()
        entered = deadlines.fix(context, _generate(seconds), SETTINGS)
        await asyncio.sleep(0.01)  # the other call fixes its own meanwhile
        return deadlines.fixed(context, _generate(seconds), SETTINGS) is entered

    assert list(await asyncio.gather(call(2), call(3))) == [True, True]
