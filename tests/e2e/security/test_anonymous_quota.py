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
    edge = parse_config({"quotas": {"rate": RATE}}, base).edge
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
