"""The header by which a ``/generate`` call finds its direct route (`_listener.MODEL_HEADER`):
Envoy sets it from the body's model, a client's own changes nothing, and no upstream gets it.
A bare Envoy of the stack's binary in direct mode, its files written as the control plane
writes them, and stand-ins that record each call they get: the gateways, and one replica
each of two direct models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.launch.direct._listener import GATEWAY_PATH, MODEL_HEADER
from gateway.launch.direct._resources import SAX_PATH
from tests.e2e._direct_envoy import Recorder, direct_envoy

pytestmark = pytest.mark.e2e

A, B = "/sax/test/a", "/sax/test/b"


@dataclass(frozen=True)
class Upstreams:
    gateway: Recorder
    replicas: Mapping[str, Recorder]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Upstreams]]:
    """Envoy's HTTP address, with A and B routed directly, and the stand-ins it calls."""
    upstreams = Upstreams(Recorder(), {A: Recorder(), B: Recorder()})
    with direct_envoy(tmp_path, upstreams.gateway, upstreams.replicas) as url:
        yield url, upstreams


def _who_got(upstreams: Upstreams) -> list[tuple[str, str, bool]]:
    """Each call recorded since the last look: who got it, its method, and whether it carried
    the model header; then forgets them."""
    out = []
    for name, recorder in (("gateway", upstreams.gateway), *upstreams.replicas.items()):
        out += [(name, method, MODEL_HEADER in meta) for method, meta in recorder.calls]
        recorder.calls.clear()
    return out


def test_a_client_sent_model_header_changes_nothing_and_reaches_no_upstream(
    served: tuple[str, Upstreams],
) -> None:
    url, upstreams = served
    with httpx.Client(base_url=url, timeout=10) as http:
        # Routed by the body's model, as without the header; the replica never sees it.
        for header in (None, B, A, ""):
            headers = {} if header is None else {MODEL_HEADER: header}
            answer = http.post("/generate", json={"model": A, "query": "q"}, headers=headers)
            assert answer.status_code == 200, answer.text
            assert _who_got(upstreams) == [(A, SAX_PATH, False)], header
        # A model not routed directly, or none, goes to a gateway whatever the header names.
        for body in ({"model": "/sax/test/other", "query": "q"}, {"query": "q"}):
            answer = http.post("/generate", json=body, headers={MODEL_HEADER: A})
            assert answer.status_code == 200, answer.text
            assert _who_got(upstreams) == [("gateway", GATEWAY_PATH, False)], body
        # On another path, where Envoy sets no header, a client's own is removed too.
        answer = http.post(f"/v1{A}:generate", json={"query": "q"}, headers={MODEL_HEADER: A})
        assert answer.status_code == 200, answer.text
        assert _who_got(upstreams) == [("gateway", GATEWAY_PATH, False)]
