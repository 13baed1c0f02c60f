"""A caller without a credential cannot have the gateway inflate a compressed message (the
secure stack).

Envoy holds at most 8 KiB of an anonymous caller's body on the open paths (GetInfo, health),
but those bytes were gzip: they reached the gateway, which inflated and parsed them. 8 KiB of
gzip is an 8 MB message, about 85 ms of the gateway's CPU for each call, from anyone on the
internet. Envoy now refuses one of more than 256 bytes as sent (an open call's message is
a few dozen); callers with a credential still compress as they like.
"""

from __future__ import annotations

import gzip
import secrets
import struct
from collections.abc import Iterator
from urllib.parse import unquote

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from tests._grpc import sync_channel
from tests.e2e.security.conftest import OPS, OPS_METADATA, SecureStack
from tests.e2e.test_grpc_web import _frame, _unframe

pytestmark = pytest.mark.e2e

#: An unknown field of 8 MB of zeros: what 8 KiB of gzip inflates to.
INFLATED = b"\x7a" + bytes([0x80, 0xA4, 0xE8, 0x03]) + bytes(8_000_000)
REFUSED = (
    "a call that needs no credential (GetInfo, health) may compress its message (grpc-encoding)"
    " to 256 bytes at most: send it uncompressed (identity)"
)


@pytest.fixture
def channel(secure: SecureStack) -> Iterator[grpc.Channel]:
    with sync_channel(secure.stack.grpc_address) as opened:
        yield opened


def _get_info(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, pb.GetInfoResponse]:
    return channel.unary_unary(
        "/saxgateway.v1.SaxGateway/GetInfo",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.GetInfoResponse.FromString,
    )


def test_an_anonymous_compressed_message_over_a_few_bytes_is_refused(
    channel: grpc.Channel,
) -> None:
    assert len(gzip.compress(INFLATED)) < 8192  # within the open paths' body limit
    with pytest.raises(grpc.RpcError) as caught:
        _get_info(channel)(INFLATED, compression=grpc.Compression.Gzip, timeout=20)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == REFUSED
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(
            health_pb2.HealthCheckRequest(service=secrets.token_hex(1000)),
            compression=grpc.Compression.Deflate,
            timeout=20,
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Uncompressed, the same calls are open as ever.
    assert _get_info(channel)(b"", timeout=20).version
    status = health.Check(health_pb2.HealthCheckRequest(), timeout=20).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_an_anonymous_compressed_grpc_web_message_is_refused(secure: SecureStack) -> None:
    packed = gzip.compress(INFLATED)
    reply = httpx.post(
        f"{secure.stack.http_url}/saxgateway.v1.SaxGateway/GetInfo",
        content=struct.pack(">BI", 1, len(packed)) + packed,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "grpc-encoding": "gzip",
        },
        timeout=20,
    )
    headers = {**reply.headers, **_unframe(reply.content)[1]}
    assert headers["grpc-status"] == "8", headers
    assert unquote(headers["grpc-message"]) == REFUSED


def test_a_caller_with_a_credential_still_compresses(
    secure: SecureStack, channel: grpc.Channel
) -> None:
    stub = gateway_pb2_grpc.SaxGatewayStub(channel)
    cells = stub.ListCells(
        pb.ListCellsRequest(), metadata=OPS_METADATA, compression=grpc.Compression.Gzip, timeout=20
    )
    assert list(cells.cells) == ["/sax/test"]
    # A channel that compresses every call (grpc.insecure_channel(..., compression=Gzip), the
    # usual way to turn compression on) makes its open calls too: a key is not checked there,
    # and GetInfo and the health check were refused, saying the call had no credential and
    # should send one. Their messages are a few bytes: compressed, they pass.
    gzip_all = [("grpc.default_compression_algorithm", grpc.Compression.Gzip)]
    with sync_channel(secure.stack.grpc_address, gzip_all) as gzipped:
        info = gateway_pb2_grpc.SaxGatewayStub(gzipped).GetInfo(
            pb.GetInfoRequest(), metadata=OPS_METADATA, timeout=20
        )
        check = health_pb2_grpc.HealthStub(gzipped).Check(
            health_pb2.HealthCheckRequest(service="saxgateway.v1.SaxGateway"), timeout=20
        )
    assert info.version
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    reply = httpx.post(
        f"{secure.stack.http_url}/saxgateway.v1.SaxGateway/ListCells",
        content=_frame(pb.ListCellsRequest()),
        headers={"content-type": "application/grpc-web+proto", "grpc-encoding": "gzip", **OPS},
        timeout=20,
    )
    assert {**reply.headers, **_unframe(reply.content)[1]}["grpc-status"] == "0"


def test_http_json_with_a_grpc_encoding_header_is_unaffected(secure: SecureStack) -> None:
    # The transcoder frames JSON uncompressed whatever the header says: nothing to refuse.
    reply = httpx.get(f"{secure.stack.http_url}/", headers={"grpc-encoding": "gzip"}, timeout=20)
    assert reply.status_code == 200, reply.text
