"""Channels for the tests' own gRPC calls: each one starts afresh, as a new client process
would.

One pytest process is many clients in turn, and grpc shares subchannels between the channels
of a process by address (its global subchannel pool). A channel some earlier test left open to
a server that has since stopped keeps its subchannel in reconnect backoff; when a later test's
server gets the same kernel-picked port, a new default channel to it takes over that
subchannel and fails its first call at once with the old "Connection refused". That was the
full suite's rare flake in ``tests/integration/test_gateway_server.py``; ``test_grpc_helper``
replays it. A channel with its own pool dials the new server itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from gateway.launch.stack import Stack

OWN_POOL: tuple[tuple[str, int], ...] = (("grpc.use_local_subchannel_pool", 1),)

Options = Sequence[tuple[str, str | int]]


def aio_channel(address: str, options: Options = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` that shares no subchannel with any other."""
    return grpc.aio.insecure_channel(address, options=[*OWN_POOL, *options])


def sync_channel(address: str, options: Options = ()) -> grpc.Channel:
    """A blocking-API channel to ``address`` that shares no subchannel with any other."""
    return grpc.insecure_channel(address, options=[*OWN_POOL, *options])


class _Adds(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends ``metadata`` along with every call's own."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def gateway_port_channel(stack: Stack, address: str) -> grpc.Channel:
    """A `sync_channel` to one of ``stack``'s gateway ports that sends what Envoy adds to
    every call, the stack's token (gateway/common/stacktoken.py): a test that calls a
    gateway port directly stands in for Envoy."""
    return grpc.intercept_channel(sync_channel(address), _Adds(stack.token_metadata))
