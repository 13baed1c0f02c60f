"""`limits.max_request_bytes` bounds a compressed gRPC message as it inflates (the secure
stack: 64 KiB).

Envoy counts a body's bytes as sent, and the gateway took messages up to 32 MiB whatever the
config said: a caller with a key sent 2 KB of gzip that the gateway inflated to a 2 MB message
and served, under a 64 KiB limit. The gateway now takes no message larger than a body within
the limit transcodes to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._edge import TRANSCODED_BYTES_PER_BODY_BYTE
from gateway.edge import Limits
from tests._grpc import sync_channel
from tests.e2e.security.conftest import OPS, OPS_METADATA, SecureStack, secure_config

pytestmark = pytest.mark.e2e

_LIMITS = secure_config(Path("jwks.json"))["limits"]
assert isinstance(_LIMITS, dict)
#: The secure stack's limits.max_request_bytes.
LIMIT: int = _LIMITS["max_request_bytes"]
#: The largest message the gateway takes: what a body within LIMIT transcodes to, with room
#: for an OpenAI body's framing.
LARGEST = TRANSCODED_BYTES_PER_BODY_BYTE * LIMIT + Limits(**_LIMITS).message_framing_bytes


def _unknown_field(size: int) -> bytes:
    """An unknown bytes field (number 15) of ``size`` zeros: ListCells ignores it."""
    varint, n = b"", size
    while n >= 128:
        varint, n = varint + bytes([n % 128 + 128]), n // 128
    return b"\x7a" + varint + bytes([n]) + bytes(size)


@pytest.fixture
def list_cells(secure: SecureStack) -> Iterator[grpc.UnaryUnaryMultiCallable[bytes, bytes]]:
    with sync_channel(secure.stack.grpc_address) as channel:
        yield channel.unary_unary(
            "/saxgateway.v1.SaxGateway/ListCells",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )


def test_a_compressed_message_counts_as_it_inflates(
    list_cells: grpc.UnaryUnaryMultiCallable[bytes, bytes],
) -> None:
    inflated = _unknown_field(LARGEST + 1)
    with pytest.raises(grpc.RpcError) as caught:
        list_cells(inflated, metadata=OPS_METADATA, compression=grpc.Compression.Gzip, timeout=20)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    # Within the bound, compressed or not, as before.
    small = _unknown_field(LIMIT // 2)
    for compression in (grpc.Compression.Gzip, grpc.Compression.NoCompression):
        reply = list_cells(small, metadata=OPS_METADATA, compression=compression, timeout=20)
        assert list(pb.ListCellsResponse.FromString(reply).cells) == ["/sax/test"]


def test_a_json_body_within_the_limit_still_reaches_the_gateway(secure: SecureStack) -> None:
    # A list of one-digit numbers is the JSON that transcodes to the largest message (each an
    # 11-byte google.protobuf.Value): 5.5 times the body.
    body = {"model": "/sax/test/sec-none", "query": "q", "extra_inputs": {"t": [0] * 30_000}}
    content = json.dumps(body, separators=(",", ":")).encode()
    assert len(content) < LIMIT
    reply = httpx.post(
        f"{secure.stack.http_url}/generate", content=content, headers=OPS, timeout=20
    )
    # The gateway read it: the model is unknown (not 429 / RESOURCE_EXHAUSTED from gRPC).
    assert reply.status_code == 404, reply.text
