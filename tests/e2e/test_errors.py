"""Errors through Envoy: the right HTTP status and a JSON body with code, message, details."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from saxml.protobuf import admin_pb2

from gateway.launch.processes import free_port
from gateway.launch.stack import Stack
from tests.e2e._published import BAD_REQUEST, TEST_LM, published, request_info


def _error(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return dict(body)


def test_unknown_model_is_404(http: httpx.Client) -> None:
    response = http.get("/listcell", params={"model": "/sax/test/nosuch"})
    body = _error(response, 404, 5)
    assert "nosuch" in str(body["message"])
    assert body["details"] == [request_info(response)]
    _error(http.post("/generate", json={"model": "/sax/test/nosuch", "query": "q"}), 404, 5)
    _error(http.post("/unpublish", json={"model": "/sax/test/nosuch"}), 404, 5)


def test_bad_model_name_is_400_with_field_violation(http: httpx.Client) -> None:
    response = http.post(
        "/publish",
        json={"model": "/sax/test/Bad!", "model_path": TEST_LM, "checkpoint": "None"},
    )
    body = _error(response, 400, 3)
    details = body["details"]
    assert isinstance(details, list) and len(details) == 2
    assert details[0]["@type"] == BAD_REQUEST
    assert details[1] == request_info(response)
    [violation] = details[0]["field_violations"]
    assert violation["field"] == "model"
    assert "Bad!" in violation["description"]


def test_missing_fields_are_400_naming_the_field(http: httpx.Client) -> None:
    for path, payload, field in [
        ("/publish", {"model_path": TEST_LM, "checkpoint": "None"}, "model"),
        ("/publish", {"model": "/sax/test/x", "checkpoint": "None"}, "model_path"),
        ("/publish", {"model": "/sax/test/x", "model_path": TEST_LM, "replicas": 1}, "checkpoint"),
        (
            "/publish",
            {"model": "/sax/test/x", "model_path": TEST_LM, "checkpoint": "None", "replicas": -1},
            "replicas",
        ),
        ("/generate", {"model": "/sax/test/x"}, "query"),
        (
            "/generate",
            {"model": "/sax/test/x", "query": "q", "extra_inputs": {"t": True}},
            "extra_inputs[t]",
        ),
    ]:
        body = _error(http.post(path, json=payload), 400, 3)
        details = body["details"]
        assert isinstance(details, list)
        fields = [v["field"] for d in details for v in d.get("field_violations", [])]
        assert fields == [field], (path, payload, body)


def test_duplicate_publish_is_409_and_keeps_the_first(http: httpx.Client) -> None:
    model = "/sax/test/dup"
    first = {"model": model, "model_path": TEST_LM, "checkpoint": "None", "replicas": 0}
    assert http.post("/publish", json=first).status_code == 200
    try:
        again = dict(first, checkpoint="/elsewhere")
        _error(http.post("/publish", json=again), 409, 6)
        kept = http.get("/listcell", params={"model": model}).json()
        assert kept["checkpoint"] == "None"
    finally:
        http.post("/unpublish", json={"model": model})


def test_a_model_with_no_replica_requested_is_400_at_once(http: httpx.Client) -> None:
    # It waited for the whole deadline (60 s) and ended 504 "0 replicas are ready".
    model = "/sax/test/zero-replicas"
    publish = {"model": model, "model_path": TEST_LM, "checkpoint": "None", "replicas": 0}
    assert http.post("/publish", json=publish).status_code == 200
    try:
        response = http.post("/generate", json={"model": model, "query": "q"})
        assert response.elapsed.total_seconds() < 5
        assert response.status_code == 400, response.text
        assert response.json() == {
            "code": 9,
            "message": f"{model} has no replica to serve it: it is published with 0 replicas "
            "(an update of its replicas makes it serve)",
            "details": [request_info(response)],
        }
    finally:
        http.post("/unpublish", json={"model": model})


def test_unknown_path_is_404_and_unknown_query_parameter_is_400(http: httpx.Client) -> None:
    assert http.get("/nosuch").status_code == 404
    assert http.post("/v2/generate", json={}).status_code == 404
    assert http.get("/listcell", params={"model": "/sax/test/x", "bogus": "1"}).status_code == 400


def test_unreachable_cell_is_503(stack: Stack, http: httpx.Client) -> None:
    # A cell whose location.proto points at an address nobody listens on.
    cell_dir = Path(stack.settings.sax_root) / "sax" / "dead"
    cell_dir.mkdir(parents=True, exist_ok=True)
    location = admin_pb2.Location(location=f"127.0.0.1:{free_port()}")
    (cell_dir / "location.proto").write_bytes(location.SerializeToString())
    try:
        # A deadline short of Envoy's route timeout (3 s here): the gateway's answer, sent
        # as its deadline runs out, must not race Envoy's own 504 for the same instant.
        response = http.get(
            "/listall", params={"sax_cell": "/sax/dead"}, headers={"grpc-timeout": "2S"}
        )
    finally:
        # The session's other tests (GET /v1/models lists every cell) need a healthy root.
        shutil.rmtree(cell_dir)
    # The client retries an unreachable admin until just before the deadline, then reports
    # what it saw: UNAVAILABLE, not a bare deadline.
    body = _error(response, 503, 14)
    assert "unreachable" in str(body["message"]) or "connect" in str(body["message"]).lower()


def test_deadline_is_504(stack: Stack, http: httpx.Client) -> None:
    overrides = {"text": "one two three four five", "delay_ms": "300"}
    with published(stack, "/sax/test/slow", TEST_LM, overrides) as model:
        by_field = http.post("/generate", json={"model": model, "query": "q", "timeout": "0.5s"})
        _error(by_field, 504, 4)
        by_header = http.post(
            "/generate", json={"model": model, "query": "q"}, headers={"grpc-timeout": "500m"}
        )
        _error(by_header, 504, 4)


def test_json_envoy_transcodes_into_bad_bytes_is_400(http: httpx.Client) -> None:
    # Found by the fuzz test: Envoy turns an object where a map<string, string> wants a
    # string into bytes that do not parse; that must be the caller's 400, not our 500.
    payload = {"model": "/sax/test/x", "model_path": TEST_LM, "checkpoint": "None",
               "overrides": {"k": {}}}  # fmt: skip
    body = _error(http.post("/publish", json=payload), 400, 3)
    assert "does not parse" in str(body["message"])
