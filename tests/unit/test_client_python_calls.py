"""clients/python: `call` and `stream` by name refuse a request of another RPC, naming the
type the RPC takes, before anything is sent (the address here serves nothing)."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_a_url_for_the_address_is_refused_naming_the_address(client: type) -> None:
    # grpc resolved "http://localhost:8888" as a host name: UNAVAILABLE at each call, which
    # says the gateway is down and a retry may help.
    message = (
        "'https://gw.example.com' is a URL; the client takes the gateway's gRPC address, "
        "host:port ('gw.example.com:443'), and credentials for TLS"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        client("https://gw.example.com")
