"""What ends a data call's retries, round by round (gateway/client/_failover.py): a round in
which a replica answered overloaded ends them once the overload window has passed since the
first such answer; a round with only unreachable replicas leaves them to the deadline. And how
a stream that has begun reports the replica that ended it."""

from __future__ import annotations

import grpc
import pytest

from gateway.client._failover import Retry, stream_error
from gateway.client._locations import AddressTable
from gateway.common.errors import ResourceExhaustedError, UnavailableError

MODEL = "/sax/test/lm"
BUSY = "queue full: ResourceExhausted"


def _failure(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.fixture
def table() -> AddressTable:
    table = AddressTable(MODEL, num_conn=2, seed=0)
    table.set_addresses({"a:1", "b:1"})
    return table


def test_a_round_with_an_overloaded_replica_ends_with_the_overload(table: AddressTable) -> None:
    retry = Retry()
    retry.failed(table, "a:1", _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY))
    retry.failed(table, "b:1", _failure(grpc.StatusCode.UNAVAILABLE, "Connection refused"))
    assert retry.overload_ended(0.5, overloaded_after=1.0) is False  # within the window
    assert retry.overload_ended(1.0, overloaded_after=1.0) is True  # a retry would start after
    error = retry.error(MODEL)  # whichever failed last: the overload is what to report
    assert isinstance(error, ResourceExhaustedError)
    assert error.message == f"{MODEL} is overloaded; retry later ({BUSY})"


def test_a_round_of_unreachable_replicas_is_left_to_the_deadline(table: AddressTable) -> None:
    retry = Retry()
    retry.failed(table, "a:1", _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY))
    retry.next_round()
    # The overloaded replica went away; the round's only failure is an unreachable one.
    retry.failed(table, "b:1", _failure(grpc.StatusCode.UNAVAILABLE, "Connection refused"))
    assert retry.overload_ended(60.0, overloaded_after=0.0) is False
    assert isinstance(retry.error(MODEL), UnavailableError)


def test_the_window_runs_from_the_first_overloaded_answer(table: AddressTable) -> None:
    retry = Retry()
    retry.failed(table, "a:1", _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY))
    first = retry.overloaded_since
    retry.next_round()
    retry.failed(table, "a:1", _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY))
    assert retry.overloaded_since == first


def test_an_unreachable_replica_is_reported_naming_the_model_and_the_replica(
    table: AddressTable,
) -> None:
    # grpc's words alone ("failed to connect to all addresses; ... connection attempt timed
    # out before receiving SETTINGS frame", a replica that hangs before its HTTP/2 greeting)
    # named neither the model nor the replica.
    grpc_text = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: "
        "connection attempt timed out before receiving SETTINGS frame"
    )
    retry = Retry()
    retry.failed(table, "b:1", _failure(grpc.StatusCode.UNAVAILABLE, grpc_text))
    error = retry.error(MODEL)
    assert isinstance(error, UnavailableError)
    assert error.message == f"no replica of {MODEL} can be reached: b:1: {grpc_text}"
    # A message that names the model already is passed on as it is.
    retry = Retry()
    cancelled = _failure(grpc.StatusCode.CANCELLED, "Cancelled")
    retry.failed(table, "a:1", cancelled)
    assert retry.error(MODEL).message == (
        f"a model server of {MODEL} cancelled the call (it may be shutting down): Cancelled"
    )


@pytest.mark.parametrize(
    "details",
    [
        "Stream removed (Socket closed)",  # the replica was killed, its connection lost
        "Cancelling all calls",  # it was told to stop, and the stream outlasted its grace
    ],
)
def test_a_begun_stream_cut_by_its_replica_names_it_and_says_to_send_it_again(
    details: str,
) -> None:
    error = stream_error(MODEL, "a:1", _failure(grpc.StatusCode.UNAVAILABLE, details))
    assert isinstance(error, UnavailableError)
    assert error.message == (
        f"the model server of {MODEL} at a:1 went away during the stream ({details}); "
        "a stream that has begun cannot move to another replica: send it again"
    )
    # The model's own failure of the stream, in Sax's words, is its own: passed on as it is.
    own = "TestLM failed after 2 tokens (fail_after_tokens): Unavailable"
    error = stream_error(MODEL, "a:1", _failure(grpc.StatusCode.UNAVAILABLE, own))
    assert (type(error), error.message) == (UnavailableError, own)
