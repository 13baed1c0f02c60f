"""How many long-lived streams each client holds open, bounded.

GenerateStream and WatchAddresses calls can stay open for minutes or hours, and a
WaitForReady as long as its deadline. Envoy caps them in
total (a circuit-breaker budget of their own); this caps them per client, so that one client
cannot use up that budget for everyone else. A client is its authenticated identity when Envoy
established one (so clients behind one NAT or proxy do not share a budget, and one client cannot
spread its streams over many addresses); otherwise its address as Envoy tells it
(``x-saxgw-client-address``: the peer's, or the client's behind ``limits.trusted_proxy_hops``
proxies), else the last entry of ``x-forwarded-for``, else the gRPC peer for direct callers.
An IPv6 address counts as its /64 (``IPV6_CLIENT_PREFIX``), as in Envoy's anonymous rate limit.
SaxGateway and the OpenAI face count in the same slots, and the gateway processes of one
stack in one table (gateway/common/slottable.py).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from gateway.client import ResourceExhaustedError
from gateway.common.limits import IPV6_CLIENT_PREFIX
from gateway.common.rpc import Context, call_metadata, metadata_value
from gateway.service._counts import AtLimit, Counts, LocalCounts

#: The header Envoy sets to the client's address on every route (envoy/envoy.yaml.tmpl).
CLIENT_ADDRESS_HEADER = "x-saxgw-client-address"
#: The header Envoy sets to the client's HTTP method on every request, before the transcoder
#: makes each one a POST (gateway/launch/_methods.py).
HTTP_METHOD_HEADER = "x-saxgw-http-method"


class Caller(Protocol):
    """What the checks read of a call: its metadata and its peer (a grpc.aio context)."""

    def invocation_metadata(self) -> Any: ...
    def peer(self) -> str: ...


def client_of(context: Caller) -> str:
    """The caller's address, as Envoy saw it (its /64 for IPv6)."""
    forwarded = None
    for key, value in call_metadata(context):
        if key == CLIENT_ADDRESS_HEADER and value:
            return _per_host(str(value))
        if key == "x-forwarded-for":
            forwarded = str(value).rsplit(",", 1)[-1].strip()
    if forwarded:
        return _per_host(forwarded)
    peer = context.peer()  # "ipv4:127.0.0.1:54321", "ipv6:[::1]:54321", "unix:PATH"
    scheme, _, address = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return peer
    # The address alone, as Envoy tells it: an IPv6 caller is its /64 here too.
    return _per_host(address.rpartition(":")[0].removeprefix("[").removesuffix("]"))


@functools.lru_cache(maxsize=1024)
def _per_host(address: str) -> str:
    """``address``, or the /64 of an IPv6 one (an IPv4 one written as IPv6 is that IPv4).
    Kept for the last 1,024 addresses: `ipaddress` took ~10 µs to parse one, at every stream
    a client opened (a few KB for the lot)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return address


def is_head(context: Caller) -> bool:
    """Whether the call is an HTTP HEAD that Envoy transcoded as its GET."""
    return metadata_value(context, HTTP_METHOD_HEADER) == "HEAD"


class StreamSlots:
    """Open streams per client; `hold` refuses one over ``per_client``. ``identify`` gives the
    caller's authenticated identity, if any (`Access.identity`). ``counts``: this process's
    own by default; the stack's shared ones when it runs several gateway processes, whose
    Envoy's stream budget the limit guards (gateway/service/_counts.py)."""

    def __init__(
        self,
        per_client: int,
        identify: Callable[[Context], str | None] = lambda _: None,
        counts: Counts | None = None,
    ) -> None:
        self._per_client = per_client
        self._identify = identify
        self._open = counts if counts is not None else LocalCounts()

    def open(self, client: str) -> int:
        return self._open.held(client)

    def hold(self, context: Context) -> Held:
        """Counts a stream for the duration of a ``with`` block; entering it is
        RESOURCE_EXHAUSTED when the client is at its limit."""
        return Held(self, context)

    def take(self, context: Context) -> tuple[str, int]:
        """Counts a stream of the caller's: (its client, the ticket `give` takes back);
        RESOURCE_EXHAUSTED when the client is at its limit."""
        client = self._identify(context) or client_of(context)
        try:
            return client, self._open.take(client, self._per_client)
        except AtLimit as full:
            raise ResourceExhaustedError(
                f"client {client} already has {full.held} streams or waits open, the limit per "
                "client; close some first"
            ) from None

    def give(self, client: str, ticket: int) -> None:
        """Ends the stream `take` counted."""
        self._open.give(client, ticket)


class Held:
    """One stream's slot while its ``with`` block runs. A class with slots, not a
    @contextmanager: it lives as long as the stream, and a generator and its manager took
    about 0.4 KB more per open stream."""

    __slots__ = ("_client", "_context", "_slots", "_ticket")

    def __init__(self, slots: StreamSlots, context: Context) -> None:
        self._slots, self._context = slots, context
        self._client, self._ticket = "", 0

    def __enter__(self) -> None:
        self._client, self._ticket = self._slots.take(self._context)

    def __exit__(self, *_: object) -> None:
        self._slots.give(self._client, self._ticket)
