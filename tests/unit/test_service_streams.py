"""Long-lived streams are counted per client; one over the limit is RESOURCE_EXHAUSTED."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import grpc
import pytest

from gateway.client import ResourceExhaustedError
from gateway.common import slottable
from gateway.common.rpc import Context
from gateway.common.slottable import SlotTable
from gateway.service._counts import SharedCounts
from gateway.service._streams import StreamSlots, client_of


class _FakeContext:
    def __init__(self, metadata: Sequence[tuple[str, str]], peer: str) -> None:
        self._metadata = metadata
        self._peer = peer

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


def _context(metadata: Sequence[tuple[str, str]], peer: str) -> Context:
    # Only the two methods the stream slots read; a real context needs a live call.
    return cast(Context, _FakeContext(metadata, peer))


def test_client_is_the_address_envoy_tells_else_the_one_it_appended_else_the_peer() -> None:
    told = [("x-forwarded-for", "6.6.6.6, 10.0.0.7"), ("x-saxgw-client-address", "6.6.6.6")]
    assert client_of(_context(told, "ipv4:127.0.0.1:5000")) == "6.6.6.6"  # trusted hops
    envoy = _context([("x-forwarded-for", "6.6.6.6, 10.0.0.7")], "ipv4:127.0.0.1:5000")
    assert client_of(envoy) == "10.0.0.7"  # a client cannot pick its own key
    assert client_of(_context([], "ipv4:127.0.0.1:5000")) == "127.0.0.1"
    assert client_of(_context([], "ipv6:[::1]:5000")) == "::/64"
    assert client_of(_context([], "unix:/run/saxgw.sock")) == "unix:/run/saxgw.sock"


def test_an_ipv6_client_is_its_slash_64() -> None:
    # By full address, a caller rotating through its /64 had a fresh budget for every stream.
    def of(address: str) -> str:
        return client_of(_context([("x-saxgw-client-address", address)], ""))

    assert of("2001:db8::1") == of("2001:db8::ffff:2") == "2001:db8::/64"
    assert of("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert of("::ffff:192.0.2.1") == "192.0.2.1"  # IPv4 written as IPv6
    assert of("192.0.2.1") == "192.0.2.1"
    forwarded = _context([("x-forwarded-for", "10.0.0.7, 2001:db8::9")], "")
    assert client_of(forwarded) == "2001:db8::/64"
    # A direct caller (no Envoy: saxgw gateway on its own) too: its key was the gRPC peer,
    # "ipv6:[2001:db8::1]", one per address.
    direct = [client_of(_context([], f"ipv6:[2001:db8::{n}]:{5000 + n}")) for n in (1, 2)]
    assert direct == ["2001:db8::/64"] * 2


def test_streams_over_the_per_client_limit_are_refused() -> None:
    slots = StreamSlots(per_client=2)
    a = _context([("x-forwarded-for", "10.0.0.1")], "")
    b = _context([("x-forwarded-for", "10.0.0.2")], "")
    with slots.hold(a), slots.hold(a), slots.hold(b):
        with pytest.raises(ResourceExhaustedError) as caught, slots.hold(a):
            pass
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "10.0.0.1 already has 2 streams or waits open" in caught.value.message
    assert slots.open("10.0.0.1") == 0
    with slots.hold(a):  # closed streams free their slots
        assert slots.open("10.0.0.1") == 1


def test_an_authenticated_client_is_counted_by_identity_not_address() -> None:
    def identify(context: Context) -> str | None:
        client = dict(context.invocation_metadata() or ()).get("x-saxgw-client")
        return client if isinstance(client, str) else None

    slots = StreamSlots(per_client=1, identify=identify)
    # Two identities behind one address (a NAT) each get their own budget...
    team_a = _context([("x-forwarded-for", "10.0.0.1"), ("x-saxgw-client", "team-a")], "")
    team_b = _context([("x-forwarded-for", "10.0.0.1"), ("x-saxgw-client", "team-b")], "")
    # ...and one identity from another address shares its own.
    team_a_elsewhere = _context([("x-forwarded-for", "10.9.9.9"), ("x-saxgw-client", "team-a")], "")
    anonymous = _context([("x-forwarded-for", "10.0.0.1")], "")
    with slots.hold(team_a), slots.hold(team_b), slots.hold(anonymous):
        with pytest.raises(ResourceExhaustedError) as caught, slots.hold(team_a_elsewhere):
            pass
        assert caught.value.message == (
            "client team-a already has 1 streams or waits open, the limit per client; close some"
            " first"
        )
        assert slots.open("10.0.0.1") == 1


def test_the_workers_of_a_stack_share_each_clients_streams(tmp_path: Path) -> None:
    slottable.create(str(tmp_path / "slots"), workers=2)
    tables = [SlotTable(str(tmp_path / "slots"), worker) for worker in (0, 1)]
    first, second = (StreamSlots(2, counts=SharedCounts(table, "streams")) for table in tables)
    a = _context([("x-forwarded-for", "10.0.0.1")], "")
    try:
        with first.hold(a), second.hold(a):
            for slots in (first, second):
                with pytest.raises(ResourceExhaustedError) as caught, slots.hold(a):
                    pass
                assert caught.value.message == (
                    "client 10.0.0.1 already has 2 streams or waits open, the limit per client;"
                    " close some first"
                )
            assert first.open("10.0.0.1") == 2
        with first.hold(a):
            assert second.open("10.0.0.1") == 1
    finally:
        for table in tables:
            table.close()
