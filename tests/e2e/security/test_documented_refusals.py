"""The OpenAPI document's credentials and refusals are the edge's: the routes it leaves open
are the ones the document marks open, and the 401, 403 and 429 it documents, with their
example bodies (proto/saxgateway/v1/examples.json), are what a stack with keys answers."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.security.conftest import BURSTY_KEY, TEAM_A_KEY, TEAM_B_KEY

# The request ID the documented examples show.
REQUEST_ID = "3f0c2b9e-5d1a-4c7e-9b8f-2a6d4e1c0b57"
GENERATE = {"model": "/sax/test/lm2b", "query": "q"}
CHAT = {"model": "/sax/test/lm2b", "messages": [{"role": "user", "content": "hi"}]}


def _examples(doc: dict[str, Any], name: str) -> list[Any]:
    content = doc["components"]["responses"][name]["content"]["application/json"]
    return [example["value"] for example in content["examples"].values()]


def _until_limited(http: httpx.Client, method: str, path: str) -> httpx.Response:
    """`bursty` (3 at once, then 1 a second) calls ``path`` until its bucket is empty."""
    for _ in range(20):
        response = http.request(
            method, path, headers={"x-api-key": BURSTY_KEY, "x-request-id": REQUEST_ID}
        )
        if response.status_code == 429:
            return response
    raise AssertionError(f"{path}: never rate-limited")


def test_the_routes_the_document_marks_open_are_the_ones_the_edge_leaves_open(
    secure_http: httpx.Client,
) -> None:
    doc = secure_http.get("/openapi.json").json()
    assert doc["security"] == [{"bearer": []}, {"apiKey": []}]
    for path, ops in doc["paths"].items():
        for verb, op in ops.items():
            if "{" in path or verb != "get":
                continue  # a request without a key is refused before any parameter is read
            response = secure_http.get(path)
            opened = op.get("security") == []
            assert (response.status_code != 401) == opened, (path, response.text)
            assert ("401" in op["responses"]) != opened, path


def test_documented_refusals_are_the_whole_bodies_the_edge_answers(
    secure_http: httpx.Client,
) -> None:
    doc = secure_http.get("/openapi.json").json()
    asked = {"x-request-id": REQUEST_ID}
    no_key = secure_http.post("/generate", json=GENERATE, headers=asked)
    assert no_key.status_code == 401
    assert [no_key.json()] == _examples(doc, "Unauthenticated")
    for header in doc["components"]["responses"]["Unauthenticated"]["headers"]:
        assert header in no_key.headers, header  # the challenge (www-authenticate) too
    # A data key publishing (Envoy's roles), and a key whose model list lacks the model
    # (the gateway's check), both 403.
    publish = {"model": "/sax/test/lm2b", "model_path": "p", "checkpoint": "None"}
    role = secure_http.post("/publish", json=publish, headers={**asked, "x-api-key": TEAM_A_KEY})
    model_list = {**asked, "Authorization": f"Bearer {TEAM_B_KEY}"}
    model = secure_http.post("/generate", json=GENERATE, headers=model_list)
    assert (role.status_code, model.status_code) == (403, 403)
    assert [role.json(), model.json()] == _examples(doc, "PermissionDenied")
    limited = _until_limited(secure_http, "GET", "/listcells")
    assert [limited.json()] == _examples(doc, "RateLimited")
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    for header in doc["components"]["responses"]["RateLimited"]["headers"]:
        assert header in limited.headers, header


def test_documented_openai_refusals_are_the_whole_bodies_the_edge_answers(
    secure_http: httpx.Client,
) -> None:
    doc = secure_http.get("/openapi.json").json()
    no_key = secure_http.get("/v1/models")
    model_list = {"Authorization": f"Bearer {TEAM_B_KEY}"}
    model = secure_http.post("/v1/chat/completions", json=CHAT, headers=model_list)
    limited = _until_limited(secure_http, "GET", "/v1/models")
    assert (no_key.status_code, model.status_code) == (401, 403)
    assert [no_key.json()] == _examples(doc, "openai.Unauthenticated")
    assert [model.json()] == _examples(doc, "openai.PermissionDenied")
    assert [limited.json()] == _examples(doc, "openai.RateLimited")
