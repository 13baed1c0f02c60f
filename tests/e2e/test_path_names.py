"""A call on a resource path (`/v1/sax/test/a:verb`, `/v1/models/{model}`) acts on the model,
cell or name its path names, however a request tries to name another: a query parameter, its
name percent-encoded (`?%6dodel=`) or in JSON's camelCase (`?saxCell=`), or a body key given
twice (protobuf keeps the last), or once (Envoy's transcoder no longer compares it: it compared
text, so the path's own model with its leading slash was refused).

Each used to reach the gateway as the other name: `POST /v1/sax/test/a:unpublish?%6dodel=/sax/
test/b` unpublished b, while the URL and the access log said a. The gateway now compares the
path Envoy transcoded (gateway/service/_bindings.py) with the request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._bodies import REQUEST_INFO
from tests.e2e._published import TEST_LM, published

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
NAMED = "/sax/test/paths-named"  # what each path names
OTHER = "/sax/test/paths-other"  # what the request tries to name instead
CELL, OTHER_CELL = "/sax/test", "/sax/other"

# Every HTTP binding that takes a field from the path: (method, path, field, what the path
# names, the other name sent). proto/saxgateway/v1/gateway.proto and openai.proto.
_MODEL_VERBS = [
    ("POST", "publish"),
    ("POST", "update"),
    ("POST", "unpublish"),
    ("POST", "generate"),
    ("POST", "streamGenerate"),
    ("POST", "score"),
    ("POST", "embed"),
    ("POST", "gradient"),
    ("POST", "classify"),
    ("POST", "textToImage"),
    ("POST", "embedImage"),
    ("POST", "detect"),
    ("POST", "imageToText"),
    ("POST", "recognize"),
    ("POST", "waitForReady"),
    ("POST", "multimodalGenerate"),
    ("POST", "multimodalScore"),
    ("POST", "multimodalEmbed"),
    ("POST", "imageToImage"),
    ("POST", "textAndImageToImage"),
    ("POST", "videoToText"),
    ("POST", "videoToToken"),
    ("POST", "tokenToVideo"),
    ("POST", "custom"),
    ("GET", "watch"),
    ("GET", "stats"),
    ("GET", "getAcl"),
    ("POST", "setAcl"),
]
_BY_NAME = {"stats", "getAcl", "setAcl"}  # a cell or a model, in `name`
ROUTES = [
    *[
        (method, f"/v1{NAMED}:{verb}", "name" if verb in _BY_NAME else "model")
        for method, verb in _MODEL_VERBS
    ],
    ("GET", f"/v1{NAMED}", "model"),
    # The transcoder binds a trailing slash away; the check read the path as it came.
    ("GET", f"/v1{NAMED}/", "model"),
    ("GET", f"/v1{NAMED}//", "model"),
    ("GET", f"/v1{CELL}:listModels", "sax_cell"),
    ("GET", f"/v1{CELL}:stats", "name"),
    ("GET", f"/v1{CELL}:getAcl", "name"),
    ("POST", f"/v1{CELL}:setAcl", "name"),
]
_CAMEL = {"sax_cell": "saxCell"}


@pytest.fixture(scope="module")
def models(stack: Stack) -> Iterator[None]:
    with (
        published(stack, NAMED, TEST_LM, {"text": "named"}),
        published(stack, OTHER, TEST_LM, {"text": "other"}),
    ):
        yield


def _names(path: str, field: str) -> tuple[str, str]:
    """What ``path`` names and the other name a request sends."""
    if field == "sax_cell" or path.startswith(f"/v1{CELL}:"):
        return CELL, OTHER_CELL
    return NAMED, OTHER


def _forms(field: str, named: str, other: str) -> Iterator[tuple[str, dict[str, str], str]]:
    """(form, query parameters, raw JSON body) of each way to name ``other`` as well."""
    yield "query", {field: other}, "{}"
    yield "encoded name", {f"%{ord(field[0]):02x}{field[1:]}": other}, "{}"
    if field in _CAMEL:
        yield "JSON name", {_CAMEL[field]: other}, "{}"
    yield "in the body", {}, json.dumps({field: other})
    # The first key is the path's own value, as the path spells it (without the slash).
    twice = f'{{"{field}": {json.dumps(named[1:])}, "{field}": {json.dumps(other)}}}'
    yield "twice in the body", {}, twice


def _refusal(response: httpx.Response, field: str, named: str, other: str) -> dict[str, object]:
    """The gateway's 400 naming ``field``, with the request's ID."""
    description = (
        f"the URL path names {named!r}, the query string or body {other!r}: "
        "a /v1/ resource path alone names what a call acts on"
    )
    return _violation(response, field, description)


def _violation(response: httpx.Response, field: str, description: str) -> dict[str, object]:
    """The gateway's 400 with one BadRequest violation of ``field``, with the request's ID."""
    violation = {"field": field, "description": description, "reason": ""}
    info = {
        "@type": REQUEST_INFO,
        "request_id": response.headers["x-request-id"],
        "serving_data": "",
    }
    return {
        "code": 3,
        "message": f"{field}: {description}",
        "details": [{"@type": BAD_REQUEST, "field_violations": [violation]}, info],
    }


def _send(
    http: httpx.Client, method: str, path: str, query: dict[str, str], body: str
) -> httpx.Response:
    # Raw, so that an encoded parameter name reaches Envoy as sent.
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    headers = {"content-type": "application/json", "grpc-timeout": "10S"}
    return http.request(method, target, content=body, headers=headers)


@pytest.mark.usefixtures("models")
@pytest.mark.parametrize(("method", "path", "field"), ROUTES)
def test_a_request_may_not_name_another_than_its_path(
    http: httpx.Client, method: str, path: str, field: str
) -> None:
    named, other = _names(path, field)
    for form, query, body in _forms(field, named, other):
        response = _send(http, method, path, query, body)
        assert response.status_code == 400, (form, response.text)
        assert response.json() == _refusal(response, field, named, other), form
    # Nothing happened to either model (an unpublish, an update or an ACL would show).
    for model, text in ((NAMED, "named"), (OTHER, "other")):
        listed = http.get(f"/v1{model}")
        assert listed.status_code == 200, listed.text
        assert listed.json()["model"]["overrides"] == {"text": text}
        assert listed.json()["model"]["method_acls"] == {}


@pytest.mark.usefixtures("models")
def test_an_openai_model_path_may_not_name_another(http: httpx.Client) -> None:
    for form, query, body in _forms("model", NAMED, OTHER):
        response = _send(http, "GET", f"/v1/models{NAMED}", query, body)
        assert response.status_code == 400, (form, response.text)
        # The path's model as the OpenAI face reads it: as sent (an ID without its slash is
        # not the one with it there, an alias may not have one).
        message = (
            f"model: the URL path names {NAMED[1:]!r}, the query string or body {OTHER!r}: "
            "a /v1/ resource path alone names what a call acts on"
        )
        error = {"message": message, "type": "invalid_request_error", "param": "model"}
        assert response.json() == {"error": {**error, "code": None}}, form


@pytest.mark.usefixtures("models")
def test_what_the_path_alone_names_is_served(http: httpx.Client) -> None:
    generated = http.post(f"/v1{NAMED}:generate", json={"query": "q"})
    assert (generated.status_code, generated.json()) == (
        200,
        {"texts": [{"text": "named", "score": -0.1}]},
    )
    # Naming the path's own model again changes nothing, however it is spelt.
    again = _send(http, "POST", f"/v1{NAMED}:generate", {"%6dodel": NAMED}, '{"query": "q"}')
    assert (again.status_code, again.json()) == (200, generated.json())
    model = http.get(f"/v1/models/{NAMED.replace('/', '%2F')}", params={"model": NAMED})
    assert (model.status_code, model.json()["id"]) == (200, NAMED)


@pytest.mark.usefixtures("models")
def test_a_refusal_quotes_the_value_as_the_request_sent_it(http: httpx.Client) -> None:
    # An empty model was quoted as '/' (the value with the slash the servicer reads IDs
    # with), which the caller never sent; so was one without its slash, with it.
    for sent in ("", OTHER[1:]):
        body = json.dumps({"model": sent, "query": "q"})
        response = _send(http, "POST", f"/v1{NAMED}:generate", {}, body)
        assert response.status_code == 400, response.text
        assert response.json() == _refusal(response, "model", NAMED, sent), sent


@pytest.mark.usefixtures("models")
@pytest.mark.parametrize(
    ("method", "path", "field", "named"),
    [
        ("POST", f"/v1{CELL}/:setAcl", "name", f"{CELL}/"),
        ("GET", f"/v1{CELL}/:listModels", "sax_cell", f"{CELL}/"),
        ("GET", f"/v1{NAMED}/:getAcl", "name", f"{NAMED}/"),
        ("POST", f"/v1{NAMED}//:generate", "model", f"{NAMED}/"),
        ("POST", f"/v1{CELL}/paths-new/:publish", "model", f"{CELL}/paths-new/"),
    ],
)
def test_a_path_with_an_empty_segment_before_its_verb_is_refused(
    http: httpx.Client, method: str, path: str, field: str, named: str
) -> None:
    # A model's path whose name came out empty (`/v1/sax/{cell}/{model}:setAcl`) set the
    # cell's admin ACL: the transcoder binds what comes before the slash. The body's form
    # ("/sax/test/") is refused as naming no model; the path now is too.
    body = {"acl": "acl/oops", "model_path": TEST_LM, "checkpoint": "None", "query": "q"}
    response = http.request(method, path, json=body if method == "POST" else None)
    description = (
        f"the URL path names {named!r}, whose last segment is empty: a /v1/ resource path "
        "names a cell as /v1/sax/CELL and a model as /v1/sax/CELL/MODEL"
    )
    expected = _violation(response, field, description)
    assert (response.status_code, response.json()) == (400, expected)
    assert http.get(f"/v1{CELL}:getAcl").json()["acl"] == ""
    assert http.get(f"/v1{CELL}/paths-new").status_code == 404
