"""A direct call that an upstream Sax model server fails: upstream says every error as UNKNOWN
with the code's Go name ending its message ("...: NotFound"), which the gateway's client reads
back into the code (common/errors.py's `code_from_text`). Through Envoy alone, the caller gets
the same code (and HTTP status), and a failure another replica may mend is tried again, as
through a gateway. A bare Envoy in direct mode before stand-in replicas (`_direct_envoy`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.e2e._direct_envoy import Recorder, direct_envoy

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/upstream"
UNKNOWN = grpc.StatusCode.UNKNOWN


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, Recorder]]:
    replica = Recorder()
    with (
        direct_envoy(tmp_path, Recorder(), {MODEL: replica}) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http, replica


def _failed(http: httpx.Client, replica: Recorder, message: str) -> tuple[int, object]:
    replica.failures = [(UNKNOWN, message)]
    answer = http.post("/generate", json={"model": MODEL, "query": "q"})
    body = answer.json()
    [info] = body.pop("details")
    assert info["@type"] == "type.googleapis.com/google.rpc.RequestInfo"
    assert info["request_id"] == answer.headers["x-request-id"]
    assert len(replica.calls) == 1  # not tried again
    replica.calls.clear()
    return answer.status_code, body


def test_an_upstream_model_servers_error_keeps_the_code_its_text_names(
    served: tuple[httpx.Client, Recorder],
) -> None:
    # Before: each was a 500 with code 2 (UNKNOWN), whatever the model server meant.
    http, replica = served
    message = "extra input 'temperature' is not a number: InvalidArgument"
    assert _failed(http, replica, message) == (400, {"code": 3, "message": message})
    # A Go status error turned into text, as a Go server that wrapped one writes it.
    message = "rpc error: code = PermissionDenied desc = not for you"
    assert _failed(http, replica, message) == (403, {"code": 7, "message": message})
    # Text that names no code stays UNKNOWN: nothing to read back.
    assert _failed(http, replica, "boom") == (500, {"code": 2, "message": "boom"})
    message = "the model is Unknown"  # a last word that is no code name of Sax's
    assert _failed(http, replica, message) == (500, {"code": 2, "message": message})


def test_an_upstream_failure_another_try_may_mend_is_tried_again(
    served: tuple[httpx.Client, Recorder],
) -> None:
    # A replica just started again, which the admin has not yet given the model, and one
    # overloaded for a moment: as the gateway's client, Envoy tries again (here the same
    # replica, the model's only one, which then answers). Before: the caller got a 500.
    http, replica = served
    for said in (
        f"model {MODEL} is not loaded on this server: NotFound",
        "too many requests in flight: ResourceExhausted",
    ):
        replica.failures = [(UNKNOWN, said)]
        answer = http.post("/generate", json={"model": MODEL, "query": "q"})
        assert (answer.status_code, answer.json()) == (200, {"texts": []}), said
        assert len(replica.calls) == 2, said
        replica.calls.clear()
