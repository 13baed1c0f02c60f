"""The seed's curl walk-through, through the real Envoy binary, asserting whole JSON bodies.

The requests are the seed's (../shared/seeds/000_*.txt) verbatim: no Content-Type on /publish,
a JSON body on `GET /listcell`.
"""

from __future__ import annotations

import json
import time

import httpx

from gateway import __version__
from gateway.launch.stack import Stack
from tests.e2e._published import TEST_LM, publish_body
from tests.e2e._seed import LISTED, MODEL, MODEL_BODY, PUBLISH_BODY, PUBLISHED, raw


def _wait_active(stack: Stack, model: str, replicas: int, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{stack.http_url}/listcell", params={"model": model}).json()
        if body.get("active_replicas") == replicas or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.1)


def test_root_greets(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "HTTP Server for SAX Client", "version": __version__}


def test_seed_walkthrough(stack: Stack) -> None:
    url = stack.http_url
    publish = raw("POST", f"{url}/publish", PUBLISH_BODY)
    assert publish.status_code == 200, publish.text
    assert publish.json() == PUBLISHED

    listcell = raw("GET", f"{url}/listcell", MODEL_BODY)
    assert listcell.status_code == 200, listcell.text
    assert set(listcell.json()) == {
        "model",
        "model_path",
        "checkpoint",
        "max_replicas",
        "active_replicas",
    }
    assert _wait_active(stack, MODEL, 1) == LISTED

    payload = json.dumps(
        {"model": "/sax/test/lm2b", "query": "Q: Who is Harry Potter's mom? A: "}, indent=2
    )
    generate = raw("POST", f"{url}/generate", payload, "application/json")
    assert generate.status_code == 200, generate.text
    texts = generate.json()["texts"]
    assert texts, "the random-weight LM returns at least one sample"
    for sample in texts:
        assert set(sample) == {"text", "score"}
        assert isinstance(sample["text"], str) and sample["text"]
        assert isinstance(sample["score"], float | int)

    unpublish = raw("POST", f"{url}/unpublish", MODEL_BODY)
    assert unpublish.status_code == 200, unpublish.text
    assert unpublish.json() == {"model": "/sax/test/lm2b"}
    gone = httpx.get(f"{url}/listcell", params={"model": "/sax/test/lm2b"})
    assert gone.status_code == 404


def test_generate_right_after_publish_waits_for_the_model(http: httpx.Client) -> None:
    model = "/sax/test/eager"
    body = publish_body(model, TEST_LM, text="ready when you are")
    assert http.post("/publish", json=body).status_code == 200
    try:
        generate = http.post("/generate", json={"model": model, "query": "hi"})
        assert generate.status_code == 200, generate.text
        assert generate.json() == {"texts": [{"text": "ready when you are", "score": -0.4}]}
    finally:
        http.post("/unpublish", json={"model": model})


def test_listall_update_and_resource_routes(stack: Stack, http: httpx.Client) -> None:
    model = "/sax/test/echo"
    published = http.post(
        "/v1/sax/test/echo:publish",
        json={
            "model_path": TEST_LM,
            "checkpoint": "None",
            "replicas": 1,
            "overrides": {"text": "a b"},
        },
    )
    assert published.status_code == 200, published.text
    placed = {"model": model, "path": TEST_LM, "checkpoint": "None"}  # what publish and update say
    assert published.json() == {**placed, "replicas": 1}
    try:
        _wait_active(stack, model, 1)
        listed = http.get("/listall", params={"sax_cell": "/sax/test"})
        assert listed.status_code == 200, listed.text
        mine = [m for m in listed.json()["models"] if m["model"] == model]
        assert len(mine) == 1
        info = mine[0]
        assert len(info["addresses"]) == 1
        assert info == {
            "model": model,
            "model_path": TEST_LM,
            "checkpoint": "None",
            "max_replicas": 1,
            "active_replicas": 1,
            "overrides": {"text": "a b"},
            "addresses": info["addresses"],
            "methods": sorted(info["methods"]),
            "method_acls": {},
        }
        assert "lm.generate" in info["methods"]
        assert http.get("/v1/sax/test:listModels").json() == listed.json()

        via_put = http.put("/update", json={"model": model, "replicas": 2})
        assert via_put.status_code == 200, via_put.text
        assert via_put.json() == {**placed, "replicas": 2, "overrides": {"text": "a b"}}
        assert _wait_active(stack, model, 2)["active_replicas"] == 2
        via_post = http.post("/update", json={"model": model, "replicas": 1})
        assert via_post.json()["replicas"] == 1

        generated = http.post("/v1/sax/test/echo:generate", json={"query": "x"})
        assert generated.json() == {"texts": [{"text": "a b", "score": -0.2}]}
        got = http.get("/v1/sax/test/echo")
        assert got.status_code == 200
        assert got.json()["model"]["model"] == model
    finally:
        assert http.post("/v1/sax/test/echo:unpublish", json={}).json() == {"model": model}
