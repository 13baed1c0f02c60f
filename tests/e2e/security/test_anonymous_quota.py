"""`quotas.rate` without authentication: a client is its address, as for the stream limit.

An Envoy of its own, rendered from a config with a rate and no credentials, in front of the
secure stack's gateways (whose own checks let anonymous GetInfo calls through)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.configfile import parse_config
from tests.e2e.security._fronts import front_envoy
from tests.e2e.security.conftest import SecureStack

pytestmark = pytest.mark.e2e

# One token per 10 s after a burst of 2: however slow the machine, 8 calls sent at once
# cannot all fit.
RATE = {"requests_per_second": 0.1, "burst": 2}


@pytest.fixture(scope="module")
def open_front(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base: Path = tmp_path_factory.mktemp("anonymous-quota")
    # One trusted proxy hop: a test may say which address it calls from (x-forwarded-for).
    edge = parse_config({"quotas": {"rate": RATE}, "limits": {"trusted_proxy_hops": 1}}, base).edge
    with front_envoy(secure, edge, base, "envoy-open") as port:
        yield f"http://127.0.0.1:{port}"


def test_anonymous_callers_have_a_bucket_per_address(open_front: str) -> None:
    with httpx.Client(base_url=open_front, timeout=30) as http, ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: http.get("/"), range(8)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(200) <= 3 and set(statuses) == {200, 429}, statuses
    refused = next(r for r in replies if r.status_code == 429)
    body = refused.json()
    assert (body["code"], body["message"]) == (8, "local_rate_limited")
    assert refused.headers["retry-after"] == "10"


def test_an_ipv6_caller_is_its_slash_64(open_front: str) -> None:
    # One host or subscriber is given a whole /64: by full address, a caller rotating through
    # it had a fresh bucket for every request.
    def status(address: str) -> int:
        return http.get("/", headers={"x-forwarded-for": address}).status_code

    with httpx.Client(base_url=open_front, timeout=30) as http:
        assert [status("2001:db8::1"), status("2001:db8::2")] == [200, 200]  # the burst of 2
        assert [status("2001:db8::3"), status("2001:db8::ffff:1")] == [429, 429]
        assert status("2001:db8:0:1::1") == 200  # the next /64
        assert status("192.0.2.1") == 200 and status("192.0.2.2") == 200  # IPv4: each address
