"""clients/python: `call` and `stream` by name refuse a request of another RPC, naming the
type the RPC takes, before anything is sent (the address here serves nothing)."""

from __future__ import annotations

import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway_client import AsyncClient, Client

NOWHERE = "127.0.0.1:1"


def test_a_request_of_another_rpc_is_a_type_error_naming_the_one_it_takes() -> None:
    # grpc serialized it as it was: a GetInfoRequest went out as Generate's request (the
    # gateway saw an empty one), and another RPC's fields would be read by number.
    with Client(NOWHERE, timeout=5) as client:
        with pytest.raises(
            TypeError,
            match=r"^Generate takes a saxgateway.v1.GenerateRequest, not a "
            r"saxgateway.v1.GetInfoRequest$",
        ):
            client.call("Generate", pb.GetInfoRequest())
        with pytest.raises(TypeError, match=r"^GenerateStream takes a saxgateway.v1.Generate"):
            client.stream("GenerateStream", pb.GenerateRequest(model="/sax/test/lm2b"))
        with pytest.raises(TypeError, match=r"^ListCells takes .*, not a dict$"):
            client.call("ListCells", {})  # type: ignore[arg-type]


async def test_the_async_client_refuses_them_too() -> None:
    async with AsyncClient(NOWHERE, timeout=5) as client:
        with pytest.raises(TypeError, match=r"^Score takes a saxgateway.v1.ScoreRequest, not"):
            await client.call("Score", pb.GenerateRequest())
        with pytest.raises(TypeError, match=r"^WatchAddresses takes a saxgateway.v1.Watch"):
            client.stream("WatchAddresses", pb.ListCellRequest())
