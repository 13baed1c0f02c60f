"""A field a request's query string sets is not set otherwise by its body, nor given twice.

Envoy's transcoder takes a query string on every route, a body too on most, and merges them
without a word: the body's value replaces the query string's, a repeated field gets both, and
of a key given twice the last counts. `POST /generate?model=/sax/test/a` with a body naming
/sax/test/b generated with b, `POST /score?suffix=x` with `{"suffix": ["y"]}` scored two
suffixes, `GET /listcell?model=a&model=b` listed b. Each is now a 400 naming the field
(gateway/service/_bindings.py); a query string alone, or one that agrees with the body, works.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._published import BAD_REQUEST, TEST_LM, published

A = "/sax/test/query-a"
B = "/sax/test/query-b"


@pytest.fixture(scope="module")
def models(stack: Stack) -> Iterator[None]:
    with (
        published(stack, A, TEST_LM, {"text": "from a"}),
        published(stack, B, TEST_LM, {"text": "from b"}),
    ):
        yield


def _refused(response: httpx.Response, field: str, description: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 3
    assert body["message"] == f"{field}: {description}"
    violations = body["details"][0]
    assert violations["@type"] == BAD_REQUEST
    assert violations["field_violations"][0]["field"] == field


@pytest.mark.usefixtures("models")
@pytest.mark.parametrize(
    ("method", "url", "body", "field", "description"),
    [
        (
            "POST",
            f"/generate?model={A}",
            {"model": B, "query": "hi"},
            "model",
            f"the query string gives {A!r}, the body {B!r}: give it in one of them",
        ),
        (
            "POST",
            f"/unpublish?model={A}",
            {"model": B},
            "model",
            f"the query string gives {A!r}, the body {B!r}: give it in one of them",
        ),
        (
            "POST",
            f"/v1{A}:generate?query=one",
            {"query": "two"},
            "query",
            "the query string gives 'one', the body 'two': give it in one of them",
        ),
        (
            "POST",
            f"/v1{A}:generate?timeout=0.001s",
            {"query": "hi", "timeout": "10s"},
            "timeout",
            "the query string gives '0.001s', the body '10s': give it in one of them",
        ),
        (
            "POST",
            "/update?clear_overrides=true",
            {"model": A, "clear_overrides": False},
            "clear_overrides",
            "the query string gives 'true', the body 'false': give it in one of them",
        ),
        (
            "POST",
            f"/score?model={A}&suffix=x",
            {"suffix": ["y"]},
            "suffix",
            "given in both the query string and the body: give it in one of them",
        ),
        (
            "GET",
            f"/listcell?model={A}&model={B}",
            None,
            "model",
            f"the query string gives it twice ({A!r}, {B!r}): give it once",
        ),
        (
            "GET",
            f"/listcell?model={A}",
            {"model": B},
            "model",
            f"the query string gives {A!r}, the body {B!r}: give it in one of them",
        ),
    ],
)
def test_a_query_string_the_body_contradicts_is_refused(
    stack: Stack,
    http: httpx.Client,
    method: str,
    url: str,
    body: dict[str, object] | None,
    field: str,
    description: str,
) -> None:
    response = http.request(method, url, json=body)
    _refused(response, field, description)
    # Neither model was touched: both still answer as themselves.
    for model, text in ((A, "from a"), (B, "from b")):
        reply = http.post("/generate", json={"model": model, "query": "hi"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["texts"][0]["text"] == text


@pytest.mark.usefixtures("models")
def test_a_query_string_alone_or_agreeing_with_the_body_works(http: httpx.Client) -> None:
    # The query string alone, the field given twice alike, and the same model spelt
    # without its slash.
    alone = http.post(f"/v1{A}:generate?query=hi&query=hi", content=b"{}")
    assert alone.status_code == 200, alone.text
    assert [t["text"] for t in alone.json()["texts"]] == ["from a"]
    same = http.post(f"/generate?model={A[1:]}", json={"model": A, "query": "hi"})
    assert same.status_code == 200, same.text
    suffixes = http.post(f"/score?model={A}&suffix=x&suffix=y+z", content=b"{}")
    assert suffixes.status_code == 200, suffixes.text
    assert len(suffixes.json()["logp"]) == 2
    listed = http.get("/listall?sax_cell=sax/test")
    assert listed.status_code == 200, listed.text
    assert {A, B} <= {m["model"] for m in listed.json()["models"]}
