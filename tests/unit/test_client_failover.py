"""What ends a data call's retries, round by round (gateway/client/_failover.py): a round in
which a replica answered overloaded ends them once the overload window has passed since the
first such answer; a round with only unreachable replicas leaves them to the deadline. And how
a stream that has begun reports the replica that ended it."""

from __future__ import annotations

import grpc
import pytest

from gateway.client._failover import LOST_AT_MOST, Retry, stream_error
from gateway.client._locations import AddressTable
from gateway.common.errors import (
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    asks_for_credentials,
)

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


def test_an_unreachable_replica_is_skipped_by_the_next_calls(table: AddressTable) -> None:
    # Marked down for a moment: round-robin chose it again, and each call paid a failed
    # attempt before its failover.
    retry = Retry()
    retry.failed(table, "a:1", _failure(grpc.StatusCode.UNAVAILABLE, "Connection refused"))
    assert [table.pick() for _ in range(4)] == ["b:1"] * 4
    # A refusal in Sax's words (the model's own) says nothing about reaching the replica.
    other = AddressTable(MODEL, num_conn=2, seed=0)
    other.set_addresses({"a:1", "b:1"})
    with pytest.raises(InvalidArgumentError):
        Retry().failed(
            other, "a:1", _failure(grpc.StatusCode.INVALID_ARGUMENT, "bad: InvalidArgument")
        )
    assert sorted(other.pick() or "" for _ in range(4)) == ["a:1", "a:1", "b:1", "b:1"]


def test_a_message_over_a_size_limit_is_not_an_overload(table: AddressTable) -> None:
    # RESOURCE_EXHAUSTED to grpc, as an overloaded replica's answer: retried on every replica
    # until `overloaded_after`, then a 429 "overloaded; retry later", a request that no retry
    # can pass. In the words of a grpc without the sizes that `call_error` reads.
    too_large = "Received message larger than max"
    with pytest.raises(ResourceExhaustedError) as failed:
        Retry().failed(table, "a:1", _failure(grpc.StatusCode.RESOURCE_EXHAUSTED, too_large))
    assert (
        failed.value.message == f"the model server of {MODEL} at a:1 failed the call: {too_large}"
    )


@pytest.mark.parametrize(
    ("code", "details", "asks"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, "missing credentials", True),  # an auth proxy's
        (grpc.StatusCode.PERMISSION_DENIED, "RBAC: access denied", True),
        # A Sax server's own refusal (an ACL), in its words: passed on as the 403 it is, not
        # a 503 saying the server "is no Sax admin" or asks for credentials.
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "user x may not use /sax/test/lm: PermissionDenied",
            False,
        ),
        (grpc.StatusCode.UNAVAILABLE, "missing credentials", False),
    ],
)
def test_only_a_refusal_not_in_sax_words_asks_for_credentials(
    code: grpc.StatusCode, details: str, asks: bool
) -> None:
    assert asks_for_credentials(code, details) is asks


@pytest.mark.parametrize(
    ("details", "lost"),
    [
        ("Stream removed (Socket closed)", True),  # a killed server
        ("Stream removed (recvmsg:Connection reset by peer (104))", True),
        # Streams the server never began (RFC 9113 8.7), safe to send again as often as needed.
        ("Stream removed (GOAWAY received; Error code: 0; Debug Text: )", False),
        ("Stream removed (RST_STREAM (Received RST_STREAM with error code 7))", False),
        ("Stream removed (ping timeout)", False),  # a silent one: the hang watch's
        ("Connection refused", False),
    ],
)
def test_only_a_connection_that_died_under_the_call_counts_as_lost(
    table: AddressTable, details: str, lost: bool
) -> None:
    retry = Retry()
    for _ in range(LOST_AT_MOST - 1):
        retry.failed(table, "a:1", _failure(grpc.StatusCode.UNAVAILABLE, details))
    last = _failure(grpc.StatusCode.UNAVAILABLE, details)
    if lost:
        with pytest.raises(UnavailableError, match="went away while holding this call 3 times"):
            retry.failed(table, "b:1", last)
    else:
        retry.failed(table, "b:1", last)  # another attempt may follow
