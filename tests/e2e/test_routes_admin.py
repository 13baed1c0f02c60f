"""Admin routes through the real Envoy: cells, models, stats, readiness, ACLs and the address
watch (an SSE stream), on the short paths and the /v1/ twins."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.cell.models import MODEL_PATHS
from gateway.cell.models.base import (
    LM_EMBED,
    LM_GENERATE,
    LM_GENERATE_STREAM,
    LM_GRADIENT,
    LM_SCORE,
)
from gateway.launch.stack import Stack
from tests.e2e._published import TEST_LM, published, request_info

CELL = "/sax/test"
MODEL = "/sax/test/routes-admin"
CPU = {"chip_type": "CHIP_TYPE_CPU", "chip_topology": "CHIP_TOPOLOGY_1"}


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, TEST_LM, {"text": "admin"}) as name:
        yield name


def _ok(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    return response.json()


def _server_addresses(stack: Stack) -> set[str]:
    return {f"127.0.0.1:{port}" for port in _model_server_ports(stack)}


def _info(stack: Stack, body: object) -> dict[str, object]:
    """The ModelInfo the fixture's model must have; its one address is one of the cell's."""
    assert isinstance(body, dict)
    addresses = body["addresses"]
    assert isinstance(addresses, list) and len(addresses) == 1
    assert addresses[0] in _server_addresses(stack)
    return {
        "model": MODEL,
        "model_path": TEST_LM,
        "checkpoint": "None",
        "max_replicas": 1,
        "active_replicas": 1,
        "overrides": {"text": "admin"},
        "addresses": addresses,
        "methods": sorted([LM_EMBED, LM_GENERATE, LM_GENERATE_STREAM, LM_GRADIENT, LM_SCORE]),
        "method_acls": {},
    }


def test_listcells(stack: Stack, http: httpx.Client) -> None:
    # Other tests may add cells under the shared SAX_ROOT: expect whatever is there.
    root = Path(stack.settings.sax_root) / "sax"
    cells = sorted(f"/sax/{p.parent.name}" for p in root.glob("*/location.proto"))
    assert CELL in cells
    assert _ok(http.get("/listcells")) == {"cells": cells}
    assert _ok(http.get("/v1/cells")) == {"cells": cells}


def test_listall_and_get_model(stack: Stack, http: httpx.Client, model: str) -> None:
    listed = _ok(http.get("/listall", params={"sax_cell": CELL}))
    assert isinstance(listed, dict) and listed["sax_cell"] == CELL
    models = listed["models"]
    assert [m["model"] for m in models] == sorted(m["model"] for m in models)
    [mine] = [m for m in models if m["model"] == model]
    assert mine == _info(stack, mine)
    assert _ok(http.get("/v1/sax/test:listModels")) == listed

    got = _ok(http.get("/v1/sax/test/routes-admin"))
    assert isinstance(got, dict)
    assert got == {"model": _info(stack, got["model"])}


def test_stats_of_the_cell(stack: Stack, http: httpx.Client) -> None:
    servers = len(_model_server_ports(stack))
    expected = {
        "server_types": [{**CPU, "replicas": servers}],
        "servers_by_model_path": dict.fromkeys(MODEL_PATHS, servers),
    }
    assert _ok(http.get("/stats", params={"name": CELL})) == expected
    assert _ok(http.get("/v1/sax/test:stats")) == expected


def test_stats_of_a_model_counts_its_servers(http: httpx.Client, model: str) -> None:
    expected = {
        "server_types": [{**CPU, "replicas": 1}],
        "servers_by_model_path": dict.fromkeys(MODEL_PATHS, 1),
    }
    assert _ok(http.get("/stats", params={"name": model})) == expected
    assert _ok(http.get("/v1/sax/test/routes-admin:stats")) == expected


def test_wait_for_ready(http: httpx.Client, model: str) -> None:
    expected = {"model": model, "active_replicas": 1}
    assert _ok(http.post("/wait_for_ready", json={"model": model, "replicas": 1})) == expected
    assert _ok(http.post("/v1/sax/test/routes-admin:waitForReady", json={})) == expected


def test_a_wait_that_runs_out_names_the_model_and_the_replicas(
    http: httpx.Client, model: str
) -> None:
    # Was "admin WaitForReady for /sax/test did not finish within its deadline": the cell
    # alone, in words that blamed the admin for the long poll's usual end. The gateway asks
    # the admin how many were ready a moment before the deadline, and says why more cannot be.
    body = {"replicas": 3, "timeout": "1s"}  # more than the cell's servers
    response = http.post("/v1/sax/test/routes-admin:waitForReady", json=body)
    assert response.status_code == 504, response.text
    assert response.json() == {
        "code": 4,
        "message": f"{model}: 1 of 3 replica(s) ready when the wait's deadline passed; it is "
        "published with 1 replica(s), so 3 can be ready only once its replicas are updated",
        "details": [request_info(response)],
    }


def test_a_wait_cut_short_by_an_unpublish_is_not_found(stack: Stack, http: httpx.Client) -> None:
    # The admin ends a wait on a model it unpublishes, with Sax's Canceled. Before, the
    # gateway passed that on: CANCELLED, HTTP 499, which says that the client gave up.
    model = "/sax/test/routes-admin-unpublished"
    body = {"model": model, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
    _ok(http.post("/publish", json=body))
    with ThreadPoolExecutor(1) as pool:
        # More replicas than the cell has servers: it waits until the unpublish.
        waiting = pool.submit(
            http.post, "/wait_for_ready", json={"model": model, "replicas": 3, "timeout": "20s"}
        )
        time.sleep(1.0)
        assert not waiting.done()
        _ok(http.post("/unpublish", json={"model": model}))
        response = waiting.result(timeout=20)
    assert response.status_code == 404, response.text
    assert response.json() == {
        "code": 5,
        "message": f"model {model} was unpublished while waiting for it to be ready",
        "details": [request_info(response)],
    }


@pytest.mark.parametrize("name", [MODEL, CELL])
def test_setacl_then_getacl(http: httpx.Client, model: str, name: str) -> None:
    v1 = "/v1" + name
    # Other tests share the cell: start from whatever ACL it has, and put that back.
    before = _ok(http.get("/getacl", params={"name": name}))
    assert isinstance(before, dict)
    # A cell has no method ACLs (the field is there, empty); the model has none set yet.
    assert before == {"name": name, "acl": before["acl"], "method_acls": {}}
    try:
        assert _ok(http.post("/setacl", json={"name": name, "acl": "group-a"})) == {
            "name": name,
            "acl": "group-a",
            "method": "",
        }
        got = {"name": name, "acl": "group-a", "method_acls": {}}
        assert _ok(http.get(f"{v1}:getAcl")) == got
        assert _ok(http.post(f"{v1}:setAcl", json={"acl": "group-b"})) == {
            "name": name,
            "acl": "group-b",
            "method": "",
        }
        got = {"name": name, "acl": "group-b", "method_acls": {}}
        assert _ok(http.get("/getacl", params={"name": name})) == got
    finally:
        reset = _ok(http.post("/setacl", json={"name": name, "acl": before["acl"]}))
        assert reset == {"name": name, "acl": before["acl"], "method": ""}


def test_method_acls_set_and_shown(http: httpx.Client, model: str) -> None:
    # As `saxutil setacl MODEL METHOD ACL`: a method's ACL beside the admin ACL, listed by
    # getacl, the model's details and the cell's listing (as `saxutil ls MODEL` shows them).
    v1 = "/v1" + MODEL
    try:
        assert _ok(http.post(f"{v1}:setAcl", json={"method": "lm.score", "acl": "acl/a"})) == {
            "name": MODEL,
            "acl": "acl/a",
            "method": "lm.score",
        }
        body = {"name": MODEL, "method": "lm.generate_stream", "acl": "acl/b"}
        assert _ok(http.post("/setacl", json=body)) == {
            "name": MODEL,
            "acl": "acl/b",
            "method": "lm.generate_stream",
        }
        acls = {"lm.score": "acl/a", "lm.generate_stream": "acl/b"}
        assert _ok(http.get(f"{v1}:getAcl")) == {"name": MODEL, "acl": "", "method_acls": acls}
        info = _ok(http.get(v1))
        assert isinstance(info, dict) and info["model"]["method_acls"] == acls
        listed = _ok(http.get("/listall", params={"sax_cell": CELL}))
        assert isinstance(listed, dict)
        [mine] = [m for m in listed["models"] if m["model"] == MODEL]
        assert mine["method_acls"] == acls
    finally:
        for method in ("lm.score", "lm.generate_stream"):
            http.post(f"{v1}:setAcl", json={"method": method, "acl": ""})
    assert _ok(http.get(f"{v1}:getAcl")) == {"name": MODEL, "acl": "", "method_acls": {}}


@pytest.mark.parametrize(
    ("path", "params"),
    [("/watch", {"model": MODEL}), ("/v1/sax/test/routes-admin:watch", {})],
)
def test_watch_starts_with_the_current_addresses(
    http: httpx.Client, model: str, path: str, params: dict[str, str]
) -> None:
    current = _ok(http.get("/v1/sax/test/routes-admin"))
    assert isinstance(current, dict)
    with http.stream("GET", path, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.iter_lines()
        first = next(lines)
    assert first.startswith("data: ")
    assert json.loads(first.removeprefix("data: ")) == {"addresses": current["model"]["addresses"]}


def test_watch_that_reaches_its_deadline_ends_with_an_in_band_error(
    http: httpx.Client, model: str
) -> None:
    # A watch ends only on an error, but at the caller's grpc-timeout it stopped with no last
    # message: an SSE client saw a 200 that simply ended, as if the watch had nothing wrong.
    started = time.monotonic()
    with http.stream("GET", "/watch", params={"model": model}, headers={"grpc-timeout": "1S"}) as r:
        assert r.status_code == 200
        events = [json.loads(line.removeprefix("data: ")) for line in r.iter_lines() if line]
    # Good: its 1 s deadline (1.04 s at worst, loaded); bad: a watch that goes on (it ends only
    # on an error) until the client's 30 s timeout. It was 3 s.
    assert time.monotonic() - started < 10
    assert len(events) == 2, events
    assert set(events[0]) == {"addresses"}
    assert events[1]["error"]["code"] == 4  # DEADLINE_EXCEEDED
    assert events[1]["error"]["message"] == f"watching {model} reached the call's deadline"


def _model_server_ports(stack: Stack) -> tuple[int, ...]:
    assert stack.settings.cell is not None  # the e2e stack runs the embedded cell
    return stack.settings.cell.model_server_ports
