"""A call's metadata is converted once however many checks read it as the call starts
(grpc.aio builds it anew at every ``invocation_metadata()``: ~15 µs each)."""

from __future__ import annotations

from typing import cast

from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import ClientSettings
from gateway.common.rpc import Context, call_metadata, metadata_value
from gateway.config import GatewaySettings
from gateway.service import _deadlines as deadlines
from gateway.service._errors import request_id
from gateway.service._streams import StreamSlots, is_head

SETTINGS = GatewaySettings(client=ClientSettings(sax_root="/tmp/root"), default_timeout=30)
ENVOYS = (
    ("x-forwarded-for", "10.1.2.3"),
    ("x-saxgw-client-address", "10.1.2.3"),
    ("x-request-id", "req-1"),
    ("x-saxgw-http-method", "POST"),
    ("x-saxgw-receiving-ms", "2"),
)


class _CountingContext:
    """A call's context that counts the reads of its metadata."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self.reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        self.reads += 1
        return self.metadata

    def time_remaining(self) -> float | None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"


def test_a_streams_start_reads_the_calls_metadata_once() -> None:
    counted = _CountingContext(ENVOYS)
    context = cast(Context, counted)
    request = pb.GenerateStreamRequest(model="/sax/test/lm", query="q")
    # What a GenerateStream reads of its metadata before its first token (the access checks,
    # its deadline, its slot), and its request ID should it fail.
    deadlines.fix(context, request, SETTINGS, stream=True)
    slots = StreamSlots(10, lambda c: metadata_value(c, "x-saxgw-client"))
    with slots.hold(context):
        assert slots.open("10.1.2.3") == 1
    assert not is_head(context)
    assert request_id(context) == "req-1"
    assert counted.reads == 1


def test_each_call_reads_its_own_metadata() -> None:
    first, second = _CountingContext(ENVOYS), _CountingContext((("x-request-id", "req-2"),))
    assert request_id(cast(Context, first)) == "req-1"
    assert request_id(cast(Context, second)) == "req-2"
    assert call_metadata(first) == ENVOYS  # read again: another call's was read since
    assert metadata_value(second, "x-request-id") == "req-2"
    assert (first.reads, second.reads) == (2, 2)


def test_a_call_without_metadata_reads_as_none() -> None:
    class _Bare:
        def invocation_metadata(self) -> None:
            return None

    bare = _Bare()
    assert call_metadata(bare) == ()
    assert metadata_value(bare, "x-request-id") is None
